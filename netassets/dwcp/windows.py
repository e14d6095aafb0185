"""Sliding windows over per-link series, and the .npz file that carries them to training.

A window is ``window`` consecutive rows of one link; its target is the row ``horizon`` steps
after the window's last row (horizon 1 = the next row, what the seed's code does). A window
never spans two links or a gap: the series is cut into runs wherever consecutive timestamps
differ from ``step`` (a missing minute, a duplicate, a reordering), and windows are drawn
inside runs only. Runs shorter than ``window + horizon`` rows yield nothing and are counted; a link
whose every run is that short is named in ``stats["links_without_windows"]``, and the others go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl
from numpy.lib.stride_tricks import sliding_window_view

from netassets.core.files import atomic_write

SPLITS = ("train", "val", "test")
CHRONOLOGICAL_RULE = "chronological by target time: first 70 % train, next 15 % validation, last 15 % test"


class TooFewRowsError(ValueError):
    """Not a single window fits in the data."""


@dataclass
class Windows:
    x: np.ndarray          # (n, window, features) float32
    y: np.ndarray          # (n, targets) float32, the value `horizon` steps after the window
    last: np.ndarray       # (n, targets) the targets' last value inside the window (persistence)
    target_time: np.ndarray  # (n,) int64 timestamp (or step index) of the target row
    link: np.ndarray       # (n,) int32 index into `link_names`
    features: list[str]
    targets: list[str]
    window: int
    horizon: int
    link_names: list[str]
    split: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # 0/1/2 = train/val/test
    stats: dict = field(default_factory=dict)    # counts of runs, gaps, skipped links...
    extra: dict = field(default_factory=dict)    # named (n, ...) arrays, e.g. the oracle

    def __len__(self) -> int:
        return len(self.y)

    def part(self, name: str) -> np.ndarray:
        """Indices of one split."""
        return np.flatnonzero(self.split == SPLITS.index(name))

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"features": self.features, "targets": self.targets, "window": self.window,
                "horizon": self.horizon, "link_names": self.link_names, "stats": self.stats}
        return atomic_write(path, lambda handle: np.savez(
            handle, x=self.x, y=self.y, last=self.last, target_time=self.target_time, link=self.link,
            split=self.split, meta=np.array(json.dumps(meta)), **{f"extra_{k}": v for k, v in self.extra.items()}))

    @classmethod
    def load(cls, path: Path) -> "Windows":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            extra = {k.removeprefix("extra_"): data[k] for k in data.files if k.startswith("extra_")}
            return cls(x=data["x"], y=data["y"], last=data["last"], target_time=data["target_time"],
                       link=data["link"], split=data["split"], extra=extra, **meta)


def build_windows(
    frame: pl.DataFrame,
    *,
    link_columns: Sequence[str],
    time_column: str,
    features: Sequence[str],
    targets: Sequence[str],
    window: int,
    horizon: int,
    step: int | float,
    step_tolerance: float = 0.0,
) -> Windows:
    """Windows of every link in ``frame``; a time difference outside step +- tolerance is a gap."""
    if window < 1 or horizon < 1:
        raise ValueError(f"window and horizon must be >= 1, got window={window}, horizon={horizon}")
    missing = [c for c in (*link_columns, time_column, *features, *targets) if c not in frame.columns]
    if missing:
        raise ValueError(f"columns {missing} missing from the data")
    span = window + horizon  # rows a run needs for one window
    xs, ys, lasts, times, link_ids, names = [], [], [], [], [], []
    stats = {"links": 0, "runs": 0, "gaps": 0, "short_runs": 0, "rows": frame.height, "links_without_windows": []}
    ordered = frame.sort([*link_columns, time_column])
    for key, series in ordered.group_by(list(link_columns), maintain_order=True):
        stats["links"] += 1
        t = series[time_column].to_numpy()
        breaks = np.flatnonzero(np.abs(np.diff(t) - step) > step_tolerance) + 1
        stats["gaps"] += len(breaks)
        feats = series.select(features).to_numpy().astype(np.float32)
        targs = series.select(targets).to_numpy().astype(np.float32)
        link_index = len(names)
        names.append("/".join(str(k) for k in key))
        windows_before = len(xs)
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(t)]):
            stats["runs"] += 1
            count = stop - start - span + 1
            if count < 1:
                stats["short_runs"] += 1
                continue
            # windows start at start..start+count-1; the target of window i is row i+window-1+horizon
            xs.append(sliding_window_view(feats[start:stop - horizon], window, axis=0).transpose(0, 2, 1))
            ys.append(targs[start + span - 1:stop])
            lasts.append(targs[start + window - 1:stop - horizon])
            times.append(t[start + span - 1:stop])
            link_ids.append(np.full(count, link_index, np.int32))
        if len(xs) == windows_before:  # every run of this link is shorter than one window
            stats["links_without_windows"].append(f"{names[-1]} ({series.height} rows)")
    if not xs:
        raise TooFewRowsError(
            f"no window of {window} rows + horizon {horizon} fits: {stats['rows']} rows in {stats['links']} link(s), "
            f"{stats['runs']} gap-free run(s), all shorter than {span} rows"
        )
    return Windows(
        x=np.ascontiguousarray(np.concatenate(xs)), y=np.concatenate(ys), last=np.concatenate(lasts),
        target_time=np.concatenate(times).astype(np.int64), link=np.concatenate(link_ids),
        features=list(features), targets=list(targets), window=window, horizon=horizon,
        link_names=names, stats=stats,
    )


def chronological_split(target_time: np.ndarray, fractions: tuple[float, float] = (0.70, 0.15)) -> np.ndarray:
    """0/1/2 per window: the earliest 70 % of targets train, the next 15 % validate, the rest test.

    Cut at timestamps, not positions, so windows of different links at the same minute land in
    the same split and no test target precedes a training target.
    """
    ordered = np.sort(target_time)
    n = len(ordered)
    cut_val = ordered[min(int(n * fractions[0]), n - 1)]
    cut_test = ordered[min(int(n * (fractions[0] + fractions[1])), n - 1)]
    split = np.zeros(n, np.int8)
    split[target_time >= cut_val] = 1
    split[target_time >= cut_test] = 2
    return split
