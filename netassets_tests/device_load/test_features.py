"""Features on hand-made series, scalers, windows and the time split."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from netassets.core.evaluation import split_of, time_cutoffs
from netassets.core.sql import load_sql
from netassets.device_load.features import (
    FEATURES, RouterScaler, Scalers, build_windows, infer_step_seconds, regular_grid,
)

DAY = dt.date(2025, 6, 20)


def _raw(rows):
    return pl.DataFrame(rows, schema=["router", "timeslot", "max_metric_value", "mean_metric_value"], orient="row").with_columns(
        pl.col("timeslot").dt.date().alias("day"), pl.lit("nl").alias("region"),
        pl.lit("h").alias("hostname"), pl.lit("i").alias("ifname"))


def _features(warehouse, raw: pl.DataFrame) -> pl.DataFrame:
    warehouse.replace_partition("device_load_raw", {"region": "nl"}, data=raw)
    with warehouse.connect() as conn:
        return conn.execute(load_sql("device_load", "device_load_features"), {"day": DAY, "region": "nl"}).pl()


def test_seed_features_on_a_hand_made_series(warehouse):
    t = dt.datetime(2025, 6, 20)
    maxes, means = [10.0, 20.0, 30.0, 40.0], [5.0, 10.0, 10.0, 0.0]
    rows = [("a", t + dt.timedelta(hours=h), mx, mn) for h, (mx, mn) in enumerate(zip(maxes, means))]
    rows.append(("a", t + dt.timedelta(days=1), 99.0, 99.0))  # next day: not in this partition
    got = _features(warehouse, _raw(rows))
    assert got.height == 4 and got["day"].unique().to_list() == [DAY]
    assert got["diff"].to_list() == [5.0, 10.0, 20.0, 40.0]
    assert got["ratio"].to_list() == [2.0, 2.0, 3.0, 1.0]  # mean 0 -> ratio 1
    assert got["delta_max"].to_list() == [0.0, 10.0, 10.0, 10.0]  # first observation -> 0
    assert got["delta_mean"].to_list() == [0.0, 5.0, 0.0, -10.0]
    # Rolling 4 (min 2 points), population std as in the seed; one point -> 0.
    expected = [0.0] + [(maxes[i] - np.mean(maxes[:i + 1])) / np.std(maxes[:i + 1]) for i in range(1, 4)]
    np.testing.assert_allclose(got["zscore_max"].to_numpy(), expected)


def test_previous_day_is_context_and_flat_windows_score_zero(warehouse):
    t = dt.datetime(2025, 6, 19, 21)
    rows = [("a", t + dt.timedelta(hours=h), 7.0, 7.0) for h in range(5)]  # 21:00 .. 01:00, flat
    got = _features(warehouse, _raw(rows))
    assert got["timeslot"].to_list() == [dt.datetime(2025, 6, 20, 0), dt.datetime(2025, 6, 20, 1)]
    assert got["delta_max"].to_list() == [0.0, 0.0]  # previous row came from the day before
    assert got["zscore_max"].to_list() == [0.0, 0.0]  # std 0 -> 0 (the seed dropped these rows)


def test_router_scaler_winsorises_like_the_seed():
    values = np.array([[1.0], [2.0], [3.0], [4.0], [100.0]])
    scaler = RouterScaler.fit(values)
    # Fences 2 -/+ 1.5*2 -> [-1, 7]: clip to the most extreme training values inside them.
    assert scaler.lower == [1.0] and scaler.upper == [4.0]
    assert scaler.median == [3.0] and scaler.iqr == [2.0]
    np.testing.assert_allclose(scaler.scale(np.array([[100.0]])), [[0.5]])
    np.testing.assert_allclose(scaler.scale(np.array([[100.0]]), winsorise=False), [[48.5]])


def _series(router, start, hours, skip=()):
    times = [start + dt.timedelta(hours=h) for h in range(hours) if h not in skip]
    base = np.arange(len(times), dtype=float)
    return pl.DataFrame({"router": router, "timeslot": times, **{f: base + i for i, f in enumerate(FEATURES)}})


def _scalers(routers, window=3):
    flat = RouterScaler([-1e9] * 8, [1e9] * 8, [0.0] * 8, [1.0] * 8)
    return Scalers(list(routers), window, 3600, "", "", {r: flat for r in routers})


def test_windows_skip_gaps_short_series_and_unseen_routers():
    start = dt.datetime(2025, 6, 20)
    frame = pl.concat([
        _series("a", start, 10, skip={5}),  # rows 0-4, then 6-9: the hole breaks windows
        _series("b", start, 3),  # not longer than the window
        _series("new", start, 10),
    ]).sort("router", "timeslot")
    windows, skipped = build_windows(frame, _scalers(["a", "b"]))
    assert set(skipped) == {"b", "new"} and "unseen" in skipped["new"] and "not longer" in skipped["b"]
    # Contiguous runs of 5 and 4 rows give 2 + 1 windows of 3 -> next.
    assert len(windows) == 3 and windows.x.shape == (3, 3, 8)
    assert [str(t) for t in windows.target_time.astype("datetime64[h]")] == ["2025-06-20T03", "2025-06-20T04", "2025-06-20T09"]
    np.testing.assert_array_equal(windows.y[:, 0], frame["max_metric_value"].to_numpy()[windows.row])
    np.testing.assert_array_equal(windows.x[0, :, 0], [0.0, 1.0, 2.0])


def test_time_split_is_ordered_and_shared_by_routers():
    times = np.array([np.datetime64("2025-06-20T00") + np.timedelta64(h, "h") for h in range(20)] * 2)
    train_end, val_end = time_cutoffs(times, train=0.8, val=0.1)  # the device-load windows' rule
    split = split_of(times, train_end, val_end)
    assert (split[:20] == split[20:]).all()  # the same cut for every router
    assert split[:16].max() == 0 and (split[16:18] == 1).all() and (split[18:20] == 2).all()
    assert (np.diff(split[:20]) >= 0).all()
    with pytest.raises(ValueError, match="at least 3 distinct"):
        time_cutoffs(times[:2])


def _device_rows(router, times, values):
    return pl.DataFrame({"router": router, "region": "nl", "hostname": "h", "ifname": "i", "timeslot": times,
                         "max_metric_value": values, "mean_metric_value": values})


def test_step_is_the_median_gap_within_routers():
    start = dt.datetime(2025, 6, 20)
    minutes = [0, 1, 2, 3, 5, 6, 7, 30]  # one-minute data with a hole and a long gap
    frame = pl.concat([_device_rows("a", [start + dt.timedelta(minutes=m) for m in minutes], [1] * 8),
                       _device_rows("b", [start + dt.timedelta(hours=5, minutes=m) for m in range(4)], [1] * 4)])
    assert infer_step_seconds(frame) == 60  # the jump from router a to router b is not a gap
    with pytest.raises(ValueError, match="cannot infer the sampling step from 1 rows"):
        infer_step_seconds(frame.head(1))


def test_regular_grid_floors_merges_fills_short_holes_and_accepts_integers():
    start = dt.datetime(2025, 6, 20)
    at = lambda m, s=0: start + dt.timedelta(minutes=m, seconds=s)  # noqa: E731
    # Irregular five-minute samples, integer values: 00:00:10 and 00:03:00 share the first step.
    times = [at(0, 10), at(3), at(5, 20), at(10, 40), at(25), at(55)]
    raw = _device_rows("a", times, [4, 6, 5, 7, 9, 3])
    grid = regular_grid(raw, 300, max_fill_steps=2)
    assert grid["max_metric_value"].dtype == pl.Float64
    got = {t.strftime("%H:%M"): (mx, mn) for t, mx, mn in grid.select("timeslot", "max_metric_value", "mean_metric_value").iter_rows()}
    assert got["00:00"] == (6.0, 5.0)  # merged: max of max, mean of mean
    assert got["00:05"] == (5.0, 5.0) and got["00:10"] == (7.0, 7.0)
    assert got["00:15"] == got["00:20"] == (7.0, 7.0)  # a two-step hole is carried forward
    assert got["00:25"] == (9.0, 9.0)
    # 00:30 .. 00:50 is a five-step hole: two steps carried, the rest stays a hole.
    assert "00:30" in got and "00:35" in got and not any(k in got for k in ("00:40", "00:45", "00:50"))
    assert got["00:55"] == (3.0, 3.0)
    assert grid["day"].to_list() == [dt.date(2025, 6, 20)] * grid.height
