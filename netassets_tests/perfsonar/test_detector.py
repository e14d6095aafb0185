"""The batched detector on small matrices (the assets end to end are in test_pipeline.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from netassets.perfsonar.model import (DetectorSettings, Window, day_hours, loss_matrix, rank_scan,
                                       scaled_accuracy, windows)
from netassets.perfsonar.scoring import score_hours


def _matrix(destinations: int, shifted_hour: int | None, shift: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = pd.date_range("2024-03-09", periods=2 * 1440, freq="min")
    values = rng.binomial(600, 0.002, (len(minutes), destinations)) / 600
    if shifted_hour is not None:
        at = 1440 + shifted_hour * 60
        values[at : at + 60] += shift
    long = pd.DataFrame({"minute": np.repeat(minutes, destinations), "destination": np.tile(
        [f"d{j}" for j in range(destinations)], len(minutes)), "packet_loss": values.ravel()})
    return loss_matrix(long)


def test_scaled_accuracy_is_zero_at_chance_and_one_when_perfect():
    assert scaled_accuracy(24 / 25, 1440, 60)[0] == pytest.approx(0.0)
    assert scaled_accuracy(1.0, 1440, 60)[0] == pytest.approx(1.0)


def test_matrix_keeps_the_last_value_of_a_minute_and_fills_missing_cells_with_zero():
    long = pd.DataFrame({"minute": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:00", "2024-01-01 00:01"]),
                         "destination": ["a", "a", "b"], "packet_loss": [0.5, 0.25, 0.1]})
    matrix = loss_matrix(long)
    assert matrix.to_dict() == {"a": {pd.Timestamp("2024-01-01 00:00"): 0.25, pd.Timestamp("2024-01-01 00:01"): 0.0},
                                "b": {pd.Timestamp("2024-01-01 00:00"): 0.0, pd.Timestamp("2024-01-01 00:01"): 0.1}}


@pytest.mark.parametrize("method", ["rank_scan", "seed"])
@pytest.mark.parametrize("destinations", [1, 3])
def test_a_source_with_few_destinations_flags_its_shifted_hour_only(destinations, method):
    matrix = _matrix(destinations, shifted_hour=7, shift=0.05)
    scores = score_hours(matrix, day_hours(dt.date(2024, 3, 10))[4:11], DetectorSettings(method=method))
    flagged = [s.hour.hour for s in scores if s.flagged]
    assert flagged == [7], [(s.hour.hour, s.score) for s in scores]
    assert scores[3].top_destinations[0] in matrix.columns


def test_hours_without_enough_reference_or_subject_are_reported_not_scored():
    matrix = _matrix(2, None, 0.0).iloc[: 1440 + 90]  # the second day stops at 01:30
    scores = score_hours(matrix, day_hours(dt.date(2024, 3, 10))[:3],
                         DetectorSettings(min_reference_rows=1440, min_subject_rows=31))
    # 01:00 has its full reference but only 30 subject minutes; 02:00 lacks the last 30 reference minutes.
    assert [s.status for s in scores] == ["scored", "insufficient_subject", "insufficient_reference"]
    early = score_hours(matrix, [pd.Timestamp("2024-03-09 06:00")])
    assert early[0].status == "insufficient_reference" and early[0].score is None


@pytest.mark.parametrize("seed", range(4))
def test_one_destination_with_an_obvious_shift_is_flagged_whatever_the_initialisation(seed):
    # The seed's 1 -> 2 -> 1 -> 1 ReLU net missed this for every initialisation tried (see batched_net).
    [score] = score_hours(_matrix(1, shifted_hour=8, shift=0.3), [pd.Timestamp("2024-03-10 08:00")],
                          DetectorSettings(method="seed", seed=seed))
    assert score.flagged and score.accuracy is not None, score


def test_the_default_detector_is_the_rank_scan_and_the_seed_classifier_stays_a_named_option():
    assert DetectorSettings().method == "rank_scan" and DetectorSettings().flag_cut == DetectorSettings().tail_cut
    assert DetectorSettings(method="seed").flag_cut == DetectorSettings().cut
    with pytest.raises(ValueError, match="method"):
        DetectorSettings(method="bogus")
    [score] = score_hours(_matrix(1, shifted_hour=8, shift=0.3), [pd.Timestamp("2024-03-10 08:00")])
    assert score.accuracy is None and score.score > DetectorSettings().tail_cut  # nothing trained, a tail score


def _uniform_window(rng: np.random.Generator, burst: tuple[int, int] | None, p: float = 0.35) -> Window:
    """The real esmond path's shape: loss spread over [0, 1], ~half the minutes missing; a burst
    drops a share p of the packets that got through (the bench's injection rule)."""
    reference = rng.random((700, 1))
    minutes = np.sort(rng.choice(60, size=30, replace=False))
    subject = rng.random((30, 1))
    if burst is not None:
        inside = (minutes >= burst[0]) & (minutes < burst[0] + burst[1])
        subject[inside] += (1 - subject[inside]) * p
    return Window(pd.Timestamp("2024-03-10 08:00"), reference, subject, minutes)


def test_the_rank_scan_finds_a_burst_covering_part_of_the_hour_that_the_whole_hour_dilutes():
    rng = np.random.default_rng(3)
    hits = {"scan": 0, "whole hour": 0}
    for _ in range(40):
        window = _uniform_window(rng, burst=(10, 25), p=0.5)
        hits["scan"] += rank_scan(window)[0] > 1.0
        hits["whole hour"] += rank_scan(window, scan_windows=((0, 60),))[0] > 1.0
    assert hits["scan"] >= 25 and hits["scan"] > hits["whole hour"] + 5, hits


def test_the_rank_scan_tail_probability_is_calibrated_on_hours_like_their_reference():
    rng = np.random.default_rng(4)
    scores = np.array([rank_scan(_uniform_window(rng, burst=None))[0] for _ in range(300)])
    # Bonferroni over correlated windows is conservative: at most ~1 % above a family-wise p of 0.01.
    assert (scores > 2).mean() <= 0.02 and (scores > 1).mean() <= 0.1, np.sort(scores)[-10:]
    # Many zero-loss minutes (ties) do not make an ordinary hour look anomalous either.
    ties = [rank_scan(Window(pd.Timestamp("2024-03-10"), rng.binomial(600, 5e-4, (1400, 3)) / 600,
                             rng.binomial(600, 5e-4, (60, 3)) / 600))[0] for _ in range(100)]
    assert np.mean(np.array(ties) > 2) <= 0.03


def test_a_short_spike_on_a_destination_that_almost_never_loses_is_not_an_anomalous_hour():
    # Without the spread floor (SPREAD_FLOOR) the reference's u barely varies, and these three
    # minutes read as a far-out window (score ~12); with it they stay below the cut (~1.7).
    rng = np.random.default_rng(5)
    reference, subject = rng.binomial(600, 2e-5, (1400, 1)) / 600, rng.binomial(600, 2e-5, (60, 1)) / 600
    subject[20:23] += 0.2
    assert rank_scan(Window(pd.Timestamp("2024-03-10"), reference, subject))[0] < DetectorSettings().tail_cut
    subject[20:50] += 0.02  # a sustained rise is
    assert rank_scan(Window(pd.Timestamp("2024-03-10"), reference, subject))[0] > DetectorSettings().tail_cut


def test_the_rank_scan_reads_the_minute_of_each_subject_row():
    matrix = _matrix(2, shifted_hour=7, shift=0.05)
    [window] = windows(matrix, [pd.Timestamp("2024-03-10 07:00")])
    assert window.subject_minutes.tolist() == list(range(60))
    gappy = matrix.drop(index=matrix.index[(matrix.index >= "2024-03-10 07:10") & (matrix.index < "2024-03-10 07:40")])
    [window] = windows(gappy, [pd.Timestamp("2024-03-10 07:00")])
    assert window.subject_minutes.tolist() == list(range(10)) + list(range(40, 60))


def test_the_zscore_baseline_compares_with_clock_hours_however_sparse_the_minutes():
    """Blocks of 60 rows were taken for hours: with ~30 rows an hour (the real esmond path) each
    spanned two hours, their means varied √2 too little, and the baseline raised 11 % false
    alarms at z > 3 on data with no anomaly (0.8 % at 60 rows an hour)."""
    from netassets.perfsonar.model import windows, zscore_baseline

    rng = np.random.default_rng(1)
    start = pd.Timestamp("2024-03-10")
    minutes = pd.date_range(start, start + pd.Timedelta(days=20), freq="2min", inclusive="left")  # 30 an hour
    matrix = pd.DataFrame(rng.normal(0.05, 0.02, (len(minutes), 3)), index=minutes)
    hours = list(pd.date_range(start + pd.Timedelta(days=1), start + pd.Timedelta(days=20), freq="h", inclusive="left"))
    z = np.array([zscore_baseline(w, 0.0) for w in windows(matrix, hours)])
    assert (z > 3).mean() < 0.03
