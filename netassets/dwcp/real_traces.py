"""Throughput-only mode on real traces: the HSDPA (3G, Norway) set in Pensieve format.

Each file is ``time_s<TAB>throughput_Mbps``, roughly one sample a second but irregular
(0.3-5 s). We treat each sample as one step, as Pensieve-style predictors do, and cut a trace
at a silence longer than ``MAX_STEP_S`` so that no window spans it. Traces, not time, are split
into train/val/test (every 5th trace tests, the next validates): the question is whether the
model forecasts a journey it has never seen.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from netassets.dwcp.windows import Windows, build_windows

MAX_STEP_S = 5.0
SPLIT_RULE = "by trace: every 5th trace (by name) tests, the next validates, the rest train"
COLUMN = "throughput_mbps"


def read_trace(path: Path) -> pl.DataFrame:
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            time_s, mbps = float(fields[0]), float(fields[1])
        except (IndexError, ValueError):
            raise ValueError(f"{path}: line {line_no}: expected 'time_s throughput_Mbps', got {line!r}") from None
        if not (math.isfinite(time_s) and math.isfinite(mbps)):
            raise ValueError(f"{path}: line {line_no}: not a finite number in {line!r}")
        if mbps < 0:
            raise ValueError(f"{path}: line {line_no}: negative throughput {mbps}")
        rows.append((time_s, mbps))
    frame = pl.DataFrame(rows, schema={"time_s": pl.Float64, COLUMN: pl.Float64}, orient="row")
    # A new segment starts after each silence longer than MAX_STEP_S, and where the clock goes back
    # (another journey appended): a window never mixes two. Steps count samples.
    gap = frame["time_s"].diff().fill_null(0)
    segment = ((gap > MAX_STEP_S) | (gap < 0)).cum_sum()
    return frame.with_columns(trace=pl.lit(path.name), segment=segment, step=pl.int_range(pl.len()))


def hsdpa_windows(folder: Path, window: int = 20, horizon: int = 3) -> Windows:
    paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"no trace files in {folder}")
    frame = pl.concat([read_trace(p) for p in paths])
    windows = build_windows(frame, link_columns=("trace", "segment"), time_column="step", features=[COLUMN],
                            targets=[COLUMN], window=window, horizon=horizon, step=1)
    trace_of_link = [name.split("/")[0] for name in windows.link_names]
    trace_rank = {name: i for i, name in enumerate(sorted(set(trace_of_link)))}
    fold = np.array([trace_rank[trace_of_link[i]] % 5 for i in windows.link])
    windows.split = np.select([fold == 0, fold == 1], [2, 1], 0).astype(np.int8)
    windows.stats["traces"] = len(paths)
    return windows
