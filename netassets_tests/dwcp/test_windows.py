"""Window construction: link boundaries, gaps, the horizon, too few rows, the chronological split."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from netassets.dwcp.windows import TooFewRowsError, Windows, build_windows, chronological_split


def _series(link: str, times: list[int]) -> pl.DataFrame:
    # value = link offset + time, so every window and target says where it came from
    offset = {"a": 0, "b": 10_000}[link]
    return pl.DataFrame({"link": link, "t": times, "v": [offset + t for t in times]})


def _windows(frame, window=3, horizon=1):
    return build_windows(frame, link_columns=["link"], time_column="t", features=["v"], targets=["v"],
                         window=window, horizon=horizon, step=1)


def test_windows_stop_at_link_boundaries_and_gaps():
    frame = pl.concat([_series("a", [0, 1, 2, 3, 4, 5, 7, 8, 9, 10]), _series("b", [0, 1, 2, 3])])
    w = _windows(frame.sample(fraction=1.0, shuffle=True, seed=1))  # input order must not matter
    # link a: run 0..5 -> 3 windows; run 7..10 -> 1 window; link b: 0..3 -> 1 window
    assert len(w) == 5 and w.stats["gaps"] == 1 and w.stats["runs"] == 3
    for x, y, t in zip(w.x[:, :, 0], w.y[:, 0], w.target_time):
        assert np.all(np.diff(x) == 1), "a window spans a gap or two links"
        assert y == x[-1] + 1 and y % 10_000 == t  # target = the row right after the window


def test_horizon_moves_the_target_and_persistence_stays_the_last_input():
    w = _windows(_series("a", list(range(10))), window=4, horizon=3)
    assert len(w) == 10 - 4 - 3 + 1
    np.testing.assert_array_equal(w.y[:, 0], w.x[:, -1, 0] + 3)
    np.testing.assert_array_equal(w.last[:, 0], w.x[:, -1, 0])


def test_horizon_one_reproduces_the_seeds_indexing():
    values = np.arange(30, dtype=np.float32)
    w = _windows(_series("a", list(range(30))), window=20, horizon=1)
    seed_x = np.array([values[i:i + 20] for i in range(30 - 20)])  # X[i:i+20], y[i+20]
    seed_y = np.array([values[i + 20] for i in range(30 - 20)])
    np.testing.assert_array_equal(w.x[:, :, 0], seed_x)
    np.testing.assert_array_equal(w.y[:, 0], seed_y)


def test_too_few_rows_for_one_window_is_a_clear_error():
    with pytest.raises(TooFewRowsError, match="no window of 20 rows \\+ horizon 15 fits: 30 rows in 1 link"):
        _windows(_series("a", list(range(30))), window=20, horizon=15)
    short_and_long = pl.concat([_series("a", [0, 1, 2]), _series("b", list(range(6)))])
    w = _windows(short_and_long)
    assert w.stats["short_runs"] == 1 and len(w) == 3


def test_chronological_split_keeps_time_order_and_proportions():
    times = np.repeat(np.arange(100), 2)  # two links observed at the same minutes
    split = chronological_split(times)
    assert np.bincount(split).tolist() == [140, 30, 30]
    assert times[split == 0].max() < times[split == 1].min() <= times[split == 1].max() < times[split == 2].min()


def test_windows_round_trip_without_pickle(tmp_path):
    w = _windows(_series("a", list(range(12))))
    w.split = chronological_split(w.target_time)
    w.extra["oracle"] = w.y * 2
    loaded = Windows.load(w.save(tmp_path / "w.npz"))
    np.testing.assert_array_equal(loaded.x, w.x)
    np.testing.assert_array_equal(loaded.extra["oracle"], w.y * 2)
    assert loaded.link_names == ["a"] and loaded.horizon == 1 and list(loaded.part("test")) == list(w.part("test"))
