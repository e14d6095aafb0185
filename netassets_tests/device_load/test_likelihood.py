"""Anomaly likelihood on constructed residual series, and the causal baselines."""

from __future__ import annotations

import numpy as np
import pytest

from netassets.device_load.baselines import rolling_zscore, windowed_gaussian
from netassets.device_load.likelihood import LikelihoodConfig, anomaly_likelihood, flags, suppress_repeats

CONFIG = LikelihoodConfig(short_window=5, long_window=200, min_history=50, refractory=20)


def _residuals(n=600, seed=0):
    return np.abs(np.random.default_rng(seed).normal(0, 1, n))


def test_likelihood_flags_the_planted_error_bursts_and_nothing_else():
    errors = _residuals()
    bursts = [150, 320, 480]
    for start in bursts:
        errors[start:start + 5] += 8.0  # a sustained burst: the short mean jumps
    flagged = np.flatnonzero(flags(anomaly_likelihood(errors, CONFIG), CONFIG))
    assert len(flagged) == len(bursts)
    assert all(start <= f < start + 5 for f, start in zip(flagged, bursts))


def test_likelihood_is_causal_and_waits_for_history():
    errors = _residuals()
    likelihood = anomaly_likelihood(errors, CONFIG)
    assert np.isnan(likelihood[:CONFIG.min_history]).all() and np.isfinite(likelihood[CONFIG.min_history:]).all()
    changed = errors.copy()
    changed[400:] = 1e6  # a later point never changes an earlier score
    np.testing.assert_array_equal(anomaly_likelihood(changed, CONFIG)[:400], likelihood[:400])


def test_a_missing_error_is_filled_from_the_past_only():
    """A missing error was filled with the whole series' mean: an early point's likelihood moved
    when only later errors changed."""
    rng = np.random.default_rng(0)
    errors = rng.gamma(2.0, 0.5, 400)
    errors[120] = np.nan
    later_changed = errors.copy()
    later_changed[190:] *= 10
    a, b = anomaly_likelihood(errors), anomaly_likelihood(later_changed)
    np.testing.assert_array_equal(a[:190], b[:190])


def test_flat_stretch_does_not_make_a_tiny_wiggle_an_alarm():
    errors = np.full(300, 1.0)
    errors[200] = 1.01
    assert not flags(anomaly_likelihood(errors, CONFIG), CONFIG).any()


def test_repeated_alarms_are_suppressed():
    alarms = np.zeros(50, dtype=bool)
    alarms[[3, 4, 10, 14, 30]] = True
    assert np.flatnonzero(suppress_repeats(alarms, 10)).tolist() == [3, 14, 30]
    with pytest.raises(ValueError, match="threshold"):
        LikelihoodConfig(threshold=1.0)


@pytest.mark.parametrize("detector", [lambda v: windowed_gaussian(v, window=100, step=10),
                                      lambda v: rolling_zscore(v, 50, 10)])
def test_baselines_are_causal_and_see_a_spike(detector):
    values = np.random.default_rng(1).normal(10, 1, 400)
    values[300] = 30.0
    scores = detector(values)
    assert np.argmax(scores) == 300
    changed = values.copy()
    changed[350:] = -1e3
    np.testing.assert_array_equal(detector(changed)[:350], scores[:350])
