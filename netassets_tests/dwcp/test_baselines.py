"""Baselines on hand-made windows, and the verdict of record on awkward inputs."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from netassets.dwcp import baselines, report
from netassets.dwcp.windows import build_windows, chronological_split


def _windows(values_by_link: dict[str, np.ndarray], window: int = 20):
    frame = pl.concat([pl.DataFrame({"link": name, "t": np.arange(len(v)), "thr": v.astype(float)})
                       for name, v in values_by_link.items()])
    w = build_windows(frame, link_columns=["link"], time_column="t", features=["thr"], targets=["thr"],
                      window=window, horizon=1, step=1)
    w.split = chronological_split(w.target_time)
    return w


def _ar1(n: int, phi: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.empty(n)
    v[0] = 10
    for t in range(1, n):
        v[t] = 10 + phi * (v[t - 1] - 10) + rng.normal()
    return v


def test_simple_baselines_read_only_the_window():
    w = _windows({"a": np.arange(1.0, 61.0)})
    index = w.part("test")
    found = baselines.all_baselines(w, index)
    recent = w.x[index, -5:, 0].astype(np.float64)
    np.testing.assert_allclose(found[baselines.PERSISTENCE][:, 0], w.x[index, -1, 0])
    np.testing.assert_allclose(found[baselines.mean_name()][:, 0], recent.mean(axis=1))
    np.testing.assert_allclose(found[baselines.harmonic_name()][:, 0], 5 / (1 / recent).sum(axis=1))
    # On a straight line the ridge AR extrapolates (nearly) exactly; persistence lags one step.
    np.testing.assert_allclose(found[baselines.ridge_name(20)][:, 0], w.y[index, 0], atol=0.05)


def test_ridge_ar_beats_persistence_on_a_mean_reverting_series():
    w = _windows({"a": _ar1(3000, 0.5)})
    forecasts, alpha = baselines.ridge_ar(w)
    test = w.part("test")
    rmse = lambda f: np.sqrt(((f - w.y[test, 0]) ** 2).mean())  # noqa: E731
    # The best linear forecast is 10 + 0.5 (last - 10): RMSE 1; persistence sqrt(2 / (1 + 0.5)) ~ 1.15.
    assert rmse(forecasts[test, 0]) < 0.95 * rmse(w.last[test, 0])
    assert alpha["thr"] in baselines.RIDGE_ALPHAS


def test_evaluation_notes_links_without_test_rows_and_tied_baselines():
    # Link "early" ends before the test period; "late" is constant, so every baseline ties on it.
    w = _windows({"early": _ar1(200, 0.5), "late": np.r_[_ar1(150, 0.5), np.full(250, 7.0)]})
    w.target_time[w.link == 1] += 100  # "late" runs 100 steps later
    w.split = chronological_split(w.target_time)
    index = w.part("test")
    assert set(w.link[index]) == {1}
    evaluation = report.model_evaluation(w, index, w.y[index].astype(np.float64) + 1.0, "test rule")
    notes = " ".join(evaluation.notes)
    assert "early" in notes and "no test windows" in notes
    assert "constant on the test rows" in notes  # nRMSE has nothing to divide by
    assert evaluation.strongest_baseline is None and evaluation.verdict.startswith("loses")


def test_no_test_windows_is_an_error_naming_the_links():
    w = _windows({"a": _ar1(100, 0.5)})
    with pytest.raises(ValueError, match="no test windows for a"):
        report.model_evaluation(w, np.array([], dtype=np.int64), np.zeros((0, 1)), "rule")


def test_a_series_shorter_than_one_window_is_named_and_the_others_go_on():
    w = _windows({"long": _ar1(100, 0.5), "short": _ar1(15, 0.5)})
    assert w.stats["links_without_windows"] == ["short (15 rows)"]
    assert set(w.link_names[i] for i in w.link) == {"long"}
