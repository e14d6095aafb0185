"""Report values on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netassets.dwcp import report


def test_scores_on_a_hand_made_case():
    actual = np.array([1.0, 2.0, 3.0, 4.0])
    predicted = np.array([2.0, 2.0, 3.0, 5.0])
    s = report.scores(actual, predicted)
    assert s["mae"] == pytest.approx(0.5)
    assert s["rmse"] == pytest.approx(math.sqrt(0.5))
    assert s["mape"] == pytest.approx((1 / 1 + 1 / 4) / 4 * 100)  # 31.25 %
    assert s["r2_score"] == pytest.approx(1 - 2 / 5)
    # cov = 3.5/4... by hand: a-mean = [-1.5,-.5,.5,1.5], p-mean = [-1,-1,0,2]; sum = 5; norms sqrt(5), sqrt(6)
    assert s["correlation"] == pytest.approx(5 / math.sqrt(5 * 6))


def test_zero_actuals_are_left_out_of_mape_and_counted():
    s = report.scores(np.array([0.0, 2.0]), np.array([1.0, 1.0]))
    assert s["mape"] == pytest.approx(50.0) and s["mape_rows_excluded"] == 1
    assert s["correlation"] is None  # a constant prediction has no correlation (JSON null, not NaN)


def test_target_met_follows_the_seeds_rule_honestly():
    actual = np.linspace(100, 200, 50)[:, None].repeat(2, axis=1)
    evaluation = report.evaluate(actual, {"perfect": actual, "off": actual * 1.06}, ["a", "b"])
    assert evaluation["perfect"]["overall"]["target_met"] is True
    # Perfectly correlated but 6 % off: correlation passes, MAPE (6 % > 5 %) fails.
    off = evaluation["off"]["overall"]
    assert off["average_correlation"] == pytest.approx(1.0) and off["average_mape"] == pytest.approx(6.0)
    assert off["target_met"] is False
    assert report.beats(evaluation, "perfect", "off") == {"a": True, "b": True}


def test_overall_table_shows_the_seeds_target_next_to_predictors():
    actual = np.arange(1.0, 11.0)[:, None]
    rows = report.overall_rows(report.evaluate(actual, {"model": actual + 1}, ["x"]))
    assert [r["predictor"] for r in rows] == ["model", "seed's target (required)", "seed's claimed result"]
    assert rows[1]["avg corr"] == 0.98 and rows[1]["avg MAPE %"] == 5.0
