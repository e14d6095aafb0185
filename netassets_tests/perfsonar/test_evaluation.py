"""The detector against its baselines per hour: known anomalous hours, ties, causality, labels."""

from __future__ import annotations

import datetime as dt
import json
import logging

import dagster as dg
import pandas as pd
import pytest

from netassets.core.partitions import DayPartition
from netassets.defs.perfsonar.assets import BASELINE_CHECK, _evaluation_metadata
from netassets.perfsonar.evaluation import (DETECTOR, STEP, ZSCORE, evaluate, flag_metrics, labels_for, read_truth,
                                            scorer_flags, step_baseline)
from netassets.perfsonar.model import DetectorSettings, day_hours, windows
from netassets.perfsonar.scoring import score_hours
from netassets.perfsonar.sample import simulate
from netassets_tests.perfsonar.test_detector import _matrix

DAY = dt.date(2024, 3, 10)
HOURS = day_hours(DAY)[4:12]


def test_constructed_series_with_known_anomalous_hours_is_evaluated_on_the_same_hours():
    matrix = _matrix(3, shifted_hour=7, shift=0.05)
    scores = score_hours(matrix, HOURS)
    flags = scorer_flags(matrix, scores, DetectorSettings())
    anomalous = {pd.Timestamp(dt.datetime.combine(DAY, dt.time(7)))}
    evaluation = evaluate(flags, anomalous)
    assert set(evaluation.scores) == {DETECTOR, ZSCORE, STEP}
    assert evaluation.rows == len(HOURS) and all(s["hours"] == len(HOURS) for s in evaluation.scores.values())
    assert evaluation.scores[DETECTOR] == flag_metrics(flags[DETECTOR], anomalous)
    assert (evaluation.scores[DETECTOR]["tp"], evaluation.scores[DETECTOR]["fp"]) == (1, 0)
    # A 5-point shift on every destination is plain to the step baseline too: a tie, and a tie loses.
    assert evaluation.scores[STEP]["f1"] == 1.0
    assert evaluation.verdict.startswith("loses:") and "ties" in evaluation.verdict
    assert "no promotion path" in evaluation.markdown()


def test_flag_metrics_count_per_hour():
    hours = day_hours(DAY)[:4]
    metrics = flag_metrics(dict(zip(hours, [True, True, False, False])), {hours[0], hours[2]})
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (1, 1, 1)
    assert metrics["precision"] == metrics["recall"] == metrics["f1"] == 0.5


@pytest.mark.parametrize("flagged", [False, True])
def test_all_baselines_tying_gives_a_clear_verdict_not_a_crash(flagged):
    hours = day_hours(DAY)[:6]
    same = {h: flagged for h in hours}
    evaluation = evaluate({DETECTOR: same, ZSCORE: dict(same), STEP: dict(same)}, anomalous=set())
    assert evaluation.verdict.startswith("loses:") and " ties " in evaluation.verdict
    assert any(n.startswith("all scorers tie at F1") for n in evaluation.notes)
    assert "all scorers tie" in evaluation.markdown()
    result = evaluation.check_result(check_name=BASELINE_CHECK)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN


def test_scorers_on_different_hours_are_refused():
    hours = day_hours(DAY)[:3]
    with pytest.raises(ValueError, match="same hours"):
        evaluate({DETECTOR: {h: False for h in hours}, ZSCORE: {h: False for h in hours[1:]}}, set())


def test_an_hour_is_scored_from_no_later_minute():
    matrix = _matrix(3, shifted_hour=7, shift=0.05)
    later = matrix.copy()
    later.loc[later.index >= pd.Timestamp(dt.datetime.combine(DAY, dt.time(8)))] += 0.3  # garbage from 08:00 on
    before, after = score_hours(matrix, HOURS), score_hours(later, HOURS)
    causal = [i for i, h in enumerate(HOURS) if h.hour < 8]
    for i in causal:
        assert after[i] == before[i], HOURS[i]
    steps = [step_baseline(w) for w in windows(matrix, HOURS[: len(causal)])]
    assert steps == [step_baseline(w) for w in windows(later, HOURS[: len(causal)])]
    eight = len(causal)  # the change is visible as soon as it is in the subject hour
    assert after[eight].baseline_max_z > before[eight].baseline_max_z + 10


def test_truth_files_label_only_their_source_and_span(tmp_path):
    sim = simulate(DAY - dt.timedelta(days=1), days=2, destinations=2, seed=1, anomaly_hours=[5])
    sim.write_truth(tmp_path / "sim.truth.json")
    hours = [pd.Timestamp(dt.datetime.combine(DAY + dt.timedelta(days=d), dt.time(5))) for d in (0, 1)]
    labels = labels_for(tmp_path, sim.source, hours)
    assert labels.labelled == labels.anomalous == {hours[0]} and [f.name for f in labels.files] == ["sim.truth.json"]
    assert labels_for(tmp_path, "other.example.org", hours).labelled == set()
    assert labels_for(tmp_path / "absent", sim.source, hours).labelled == set()


def test_a_malformed_truth_file_names_itself_and_is_skipped_by_the_labels(tmp_path):
    path = tmp_path / "broken.truth.json"
    path.write_text(json.dumps([{"hour": "2024-03-10T05:00:00"}]))  # the old list-only format
    with pytest.raises(ValueError, match="broken.truth.json"):
        read_truth(path)
    labels = labels_for(tmp_path, "psb.example.org", HOURS)
    assert labels.labelled == set() and len(labels.unreadable) == 1 and "broken.truth.json" in labels.unreadable[0]


def test_without_labels_the_check_warns_that_nothing_was_evaluated(netassets_home):
    matrix = _matrix(2, shifted_hour=7, shift=0.05)
    scores = score_hours(matrix, HOURS)
    metadata, check = _evaluation_metadata(DayPartition(DAY, "psb.example.org"), matrix, scores, DetectorSettings(),
                                           logging.getLogger(__name__))
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("not evaluated") and "verdict" not in metadata
    assert metadata[f"alarms ({DETECTOR})"] == sum(s.flagged for s in scores)
