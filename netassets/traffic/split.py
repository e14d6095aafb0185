"""Which flows train, validate and test the next-packet model: whole partitions, never hashed flows.

The rule, in order of preference (``core.evaluation`` does the cutting):

1. three or more distinct days: by day (``split_by_day``) - the last day(s) test, the ones
   before validate, every site of a day on the same side;
2. otherwise three or more day x site partitions: by partition, ordered by day then site - the
   last partition(s) test (a site the model never saw, on the latest day);
3. otherwise (one or two partitions): the flows in capture order (day, site, file, line - a
   capture file lists flows in the order they were recorded) cut 70/15/15 by
   ``chronological_bounds``; the metadata says so, since test then shares a capture with training.

This module imports no torch: the asset computes the split and hands it to the worker.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from netassets.core.evaluation import SPLITS, chronological_bounds, split_by_day

# The byte offset after the line: a minified .json holds every flow on its line 1.
CAPTURE_ORDER = ["day", "site", "source_file", "line_no", "byte_offset"]


def _summary(names: dict[str, list[str]]) -> str:
    return "; ".join(f"{split} {', '.join(values)}" for split, values in names.items())


def assign_splits(flows: pl.DataFrame, val_fraction: float, test_fraction: float) -> tuple[pl.DataFrame, str]:
    """``flows`` (one row per flow, with ``day`` and ``site``) in capture order with a ``split``
    column ("train" / "val" / "test"), and the rule that made it, in words."""
    if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"need 0 < val_fraction, 0 < test_fraction, sum < 1; got {val_fraction}, {test_fraction}")
    flows = flows.sort(CAPTURE_ORDER)
    days = np.array([d.isoformat() for d in flows["day"]])
    partitions = np.array([f"{d}|{s}" for d, s in zip(days, flows["site"])])
    if len(set(days)) >= 3:
        masks, names = split_by_day(days, val_fraction, test_fraction)
        rule = f"by day partition, last days test: {_summary(names)}"
    elif len(set(partitions)) >= 3:
        masks, names = split_by_day(partitions, val_fraction, test_fraction)
        rule = f"by day|site partition, ordered by day then site, last test: {_summary(names)}"
    else:
        train_end, val_end = chronological_bounds(len(flows), 1 - val_fraction - test_fraction, val_fraction)
        position = np.arange(len(flows))
        masks = {"train": position < train_end, "val": (position >= train_end) & (position < val_end),
                 "test": position >= val_end}
        rule = (f"fallback, only {len(set(partitions))} partition(s) ({', '.join(sorted(set(partitions)))}): "
                f"flows in capture order (file, line), first {train_end} train, next {val_end - train_end} "
                f"validate, last {len(flows) - val_end} test")
    split = np.select([masks[name] for name in SPLITS], SPLITS, default="")
    return flows.with_columns(split=pl.Series(split)), rule
