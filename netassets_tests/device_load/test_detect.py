"""DBSCAN labelling on constructed error series with known outliers, and the seed's fallback rule."""

from __future__ import annotations

import numpy as np
import pytest

from netassets.device_load.detect import ANOMALY, dbscan_labels, kdistance_eps


def test_dbscan_flags_the_planted_outliers():
    rng = np.random.default_rng(0)
    errors = np.abs(rng.normal(0, 0.1, (60, 2)))
    outliers = [7, 33, 51]
    errors[outliers] = [[3.0, 2.5], [0.1, 4.0], [5.0, 0.2]]
    labels = dbscan_labels(errors, eps=0.5, min_samples=5)
    assert np.flatnonzero(labels == ANOMALY).tolist() == outliers


def test_reference_errors_give_a_small_partition_its_density():
    rng = np.random.default_rng(1)
    reference = np.abs(rng.normal(0, 0.1, (100, 2)))
    day = np.array([[0.05, 0.1], [0.1, 0.02], [2.0, 2.0]])
    # Alone, three points cannot reach min_samples=5: everything is "anomalous".
    assert (dbscan_labels(day, eps=0.5, min_samples=5) == ANOMALY).all()
    # With the router's held-out errors as reference only the outlier is.
    assert dbscan_labels(day, eps=0.5, min_samples=5, reference=reference).tolist()[2] == ANOMALY
    assert (dbscan_labels(day, eps=0.5, min_samples=5, reference=reference)[:2] != ANOMALY).all()


def test_seed_fallback_marks_a_drifted_series():
    drifted = np.full((30, 2), 6.0) + np.random.default_rng(2).normal(0, 0.05, (30, 2))
    assert (dbscan_labels(drifted, eps=1.0, min_samples=5) != ANOMALY).all()  # one dense cluster, far from 0
    assert (dbscan_labels(drifted, eps=1.0, min_samples=5, fallback_mean_error=4.0) == ANOMALY).all()
    assert (dbscan_labels(drifted * 0.1, eps=1.0, min_samples=5, fallback_mean_error=4.0) != ANOMALY).all()


def test_kdistance_eps_follows_the_noise_level():
    rng = np.random.default_rng(3)
    quiet = np.abs(rng.normal(0, 0.1, (200, 2)))
    eps_quiet, eps_noisy = kdistance_eps(quiet, 5, 0.99), kdistance_eps(quiet * 10, 5, 0.99)
    assert eps_noisy == pytest.approx(10 * eps_quiet)  # distances scale with the errors
    assert 0 < eps_quiet < np.linalg.norm(quiet, axis=1).max()
    with pytest.raises(ValueError, match="too few"):
        kdistance_eps(quiet[:3], 5, 0.99)
