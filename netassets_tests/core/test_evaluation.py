"""The one evaluation protocol: splits never mix time, verdicts read test, promotion needs a win."""

import math

import dagster as dg
import numpy as np
import pytest

from netassets.core.evaluation import (
    Evaluation,
    chronological_bounds,
    promotion_refusal,
    refuse_unless_promotable,
    split_by_day,
    split_of,
    time_cutoffs,
)


def _evaluation(model: float, **baselines: float) -> Evaluation:
    scores = {"lstm": {"rmse": model}} | {name: {"rmse": v} for name, v in baselines.items()}
    return Evaluation(model="lstm", metric="rmse", higher_is_better=False, scores=scores, rows=100,
                      split_rule="last 15 % of each link")


def test_split_by_day_keeps_days_whole_and_in_order():
    days = np.array(["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-05", "2024-01-04"] * 3)
    masks, names = split_by_day(days, val_fraction=0.2, test_fraction=0.2)
    assert names == {"train": ["2024-01-01", "2024-01-02", "2024-01-03"], "val": ["2024-01-04"], "test": ["2024-01-05"]}
    assert (masks["train"] | masks["val"] | masks["test"]).all()
    assert not (masks["train"] & masks["test"]).any()
    assert set(days[masks["test"]]) == {"2024-01-05"}


def test_split_by_day_needs_three_days():
    with pytest.raises(ValueError, match="at least 3 days"):
        split_by_day(np.array(["2024-01-01", "2024-01-02"]), 0.1, 0.1)


def test_time_split_puts_every_test_row_after_every_training_row():
    times = np.arange("2024-01-01T00:00", "2024-01-02T00:00", np.timedelta64(1, "h"), dtype="datetime64[m]")
    shuffled = np.random.default_rng(0).permutation(times)
    split = split_of(shuffled, *time_cutoffs(shuffled, 0.7, 0.15))
    assert shuffled[split == 0].max() < shuffled[split == 1].min()
    assert shuffled[split == 1].max() < shuffled[split == 2].min()
    assert set(np.unique(split)) == {0, 1, 2}


def test_chronological_bounds_leave_each_part_non_empty():
    assert chronological_bounds(100) == (70, 85)
    train_end, val_end = chronological_bounds(3)
    assert 0 < train_end < val_end < 3
    with pytest.raises(ValueError, match="at least 3 rows"):
        chronological_bounds(2)


def test_strongest_baseline_and_verdict_respect_the_metric_direction():
    ev = _evaluation(0.39, persistence=0.42, ridge_ar20=0.40, mean_last_5=0.41)
    assert ev.strongest_baseline == "ridge_ar20"
    assert ev.beats_strongest_baseline
    assert ev.verdict.startswith("wins: lstm rmse 0.39 beats ridge_ar20 0.4")
    higher = Evaluation("m", "accuracy", True, {"m": {"accuracy": 0.8}, "logreg": {"accuracy": 0.9},
                                                   "majority": {"accuracy": 0.2}}, 10, "held-out day")
    assert higher.strongest_baseline == "logreg" and not higher.beats_strongest_baseline


@pytest.mark.parametrize("model, baseline", [(0.40, 0.40), (0.41, 0.40), (math.nan, 0.40), (math.inf, 0.40)])
def test_a_tie_a_loss_or_a_non_finite_score_is_never_a_win(model, baseline):
    ev = _evaluation(model, persistence=baseline)
    assert not ev.beats_strongest_baseline
    assert ev.verdict.startswith("loses")
    assert promotion_refusal(ev).startswith("not promoted: loses")


def test_a_baseline_without_a_finite_score_makes_the_model_lose_even_when_others_are_weaker():
    """Judged only against the finite ones, a NaN strongest baseline left the model beating the weaker rest."""
    ev = _evaluation(0.9, persistence=math.nan, mean=1.0)
    assert not ev.beats_strongest_baseline
    assert ev.verdict.startswith("loses: baseline(s) persistence have no finite rmse")
    assert promotion_refusal(ev).startswith("not promoted: loses")


def test_no_finite_baseline_means_no_promotion():
    ev = _evaluation(0.1, persistence=math.nan)
    assert ev.strongest_baseline is None and not ev.beats_strongest_baseline
    assert "no baseline" in ev.verdict


def test_promotion_needs_the_test_split_and_a_recorded_evaluation():
    assert promotion_refusal(None).startswith("no evaluation")
    on_val = Evaluation("lstm", "rmse", False, {"lstm": {"rmse": 0.1}, "p": {"rmse": 0.2}}, 5, "x", split="val")
    assert "test split" in promotion_refusal(on_val)
    assert promotion_refusal(_evaluation(0.1, persistence=0.2)) is None


def test_refused_promotion_raises_a_failure_that_says_why():
    with pytest.raises(dg.Failure) as raised:
        refuse_unless_promotable(_evaluation(0.5, persistence=0.4), candidate="run-1")
    assert "loses to persistence" in raised.value.description
    assert "evaluation" in raised.value.metadata and "candidate" in raised.value.metadata
    refuse_unless_promotable(_evaluation(0.3, persistence=0.4))  # a winner passes silently


def test_round_trip_and_check_result():
    ev = _evaluation(0.5, persistence=0.4)
    again = Evaluation.from_dict(ev.to_dict())
    assert again == ev
    result = ev.check_result(check_name="beats_strongest_baseline", asset_key=dg.AssetKey("x"))
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.WARN
    assert "loses to persistence" in result.description
    table = ev.markdown()
    assert "| lstm | model | test |" in table and "strongest baseline" in table


@pytest.mark.parametrize("n", [3, 4, 5, 6, 10, 100])
def test_time_cutoffs_leave_every_part_a_time_however_few(n):
    """With 3-5 distinct times the validation part was empty (both cuts on one time)."""
    times = np.arange(n).astype("datetime64[h]")
    parts = np.bincount(split_of(times, *time_cutoffs(times)), minlength=3)
    assert (parts >= 1).all() and parts.sum() == n
