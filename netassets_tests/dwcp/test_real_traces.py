"""Throughput-only mode on Pensieve-format traces: a hand-made trace, then the real HSDPA set."""

from __future__ import annotations

import numpy as np
import pytest

from netassets.dwcp.real_traces import hsdpa_windows, read_trace


def test_silences_cut_a_trace(tmp_path):
    folder = tmp_path / "traces"
    folder.mkdir()
    times = [*np.arange(0, 30.0), *np.arange(40, 70.0)]  # a 10 s silence after 30 samples
    (folder / "trip_1").write_text("".join(f"{t}\t{1 + (i % 4)}\n" for i, t in enumerate(times)))
    w = hsdpa_windows(folder, window=20, horizon=3)
    assert w.link_names == ["trip_1/0", "trip_1/1"] and len(w) == 2 * (30 - 23 + 1)
    assert w.stats["gaps"] == 0 and w.stats["runs"] == 2  # the silence starts a segment, not a gap


def test_a_clock_going_back_cuts_a_trace_too(tmp_path):
    """Another journey appended to a file: its clock starts again, and no window may mix the two."""
    folder = tmp_path / "traces"
    folder.mkdir()
    times = [*np.arange(0, 30.0), *np.arange(0, 30.0)]
    (folder / "trip_1").write_text("".join(f"{t}\t{1 + (i % 4)}\n" for i, t in enumerate(times)))
    w = hsdpa_windows(folder, window=20, horizon=3)
    assert w.link_names == ["trip_1/0", "trip_1/1"] and len(w) == 2 * (30 - 23 + 1)


@pytest.mark.parametrize("bad", ["1.0\tfast", "1.0\tnan", "inf\t2.0"])
def test_bad_trace_line_names_file_and_line(tmp_path, bad):
    path = tmp_path / "trip"
    path.write_text(f"0.0\t1.5\n{bad}\n")
    with pytest.raises(ValueError, match=r"trip: line 2"):
        read_trace(path)


def test_real_hsdpa_traces_split_by_trace(shared_data):
    w = hsdpa_windows(shared_data / "bandwidth" / "hsdpa", window=20, horizon=3)
    assert w.stats["traces"] == 80 and w.x.shape[1:] == (20, 1)
    traces = np.array([w.link_names[i].split("/")[0] for i in w.link])
    by_split = [set(traces[w.split == s]) for s in range(3)]
    assert all(by_split) and not (by_split[0] & by_split[2]) and not (by_split[1] & by_split[2])
    assert (w.y >= 0).all()
