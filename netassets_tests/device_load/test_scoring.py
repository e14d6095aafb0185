"""The NAB-style scorer and the window-level scores on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netassets.device_load.scoring import events, nab_raw_score, nab_score, window_counts, window_scores

T = np.datetime64("2014-01-01T00:00", "us") + np.arange(100) * np.timedelta64(1, "m")
WINDOW = [(T[40], T[49])]  # 10 points wide; the first 15 points are probationary


def flagged_at(*points):
    out = np.zeros(100, dtype=bool)
    out[list(points)] = True
    return out


def raw(*points):
    return nab_raw_score(T, flagged_at(*points), WINDOW)["raw"]


def test_nab_true_positive_weights():
    # scaledSigmoid(x) = 2 sigmoid(-5x) - 1 = tanh(-2.5x), normalised by its value at x = -1.
    assert raw(40) == pytest.approx(1.0)  # detected at the window's first point: the full tpWeight
    assert raw(49) == pytest.approx(math.tanh(0.25) / math.tanh(2.5))  # last point: position -1/10
    assert raw(40, 45, 49) == pytest.approx(1.0)  # only the best detection of a window counts
    assert raw() == pytest.approx(-1.0)  # missed window: -fnWeight


def test_nab_false_positive_weights():
    assert raw(20) == pytest.approx(-1.0 - 0.11)  # no window before it: -fpWeight
    assert raw(59) == pytest.approx(-1.0 - 0.11 * math.tanh(2.5 * 10 / 9))  # 10 points past a 10-wide window
    assert raw(5) == pytest.approx(-1.0)  # probationary points are not scored


def test_nab_normalised_score():
    perfect, missed, late = (nab_raw_score(T, flagged_at(*p), WINDOW) for p in ((40,), (), (49, 20)))
    assert nab_score([perfect]) == pytest.approx(100.0)
    assert nab_score([missed]) == pytest.approx(0.0)
    assert nab_score([late]) == pytest.approx(100 * (math.tanh(0.25) / math.tanh(2.5) - 0.11 + 1) / 2)
    assert nab_score([perfect, missed]) == pytest.approx(50.0)


def test_window_precision_recall_f1():
    flagged = flagged_at(10, 11, 12, 45, 46, 80)  # events: 10-12 (false), 45-46 (true), 80 (false)
    assert events(flagged) == [(10, 12), (45, 46), (80, 80)]
    two_windows = WINDOW + [(T[60], T[70])]
    scores = window_scores([window_counts(T, flagged, two_windows)])
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert window_scores([window_counts(T, np.zeros(100, bool), WINDOW)])["f1"] == 0.0


def test_window_limits_must_be_timestamps_of_the_series():
    with pytest.raises(ValueError, match="does not start and end on timestamps"):
        nab_raw_score(T, flagged_at(1), [(T[40] + np.timedelta64(30, "s"), T[49])])
