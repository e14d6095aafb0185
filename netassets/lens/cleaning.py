"""The seed's cleaning of one day x region, vectorised: samples -> kept 15 s groups on a 10 ms grid.

Input: original timestamps (ns) and rtt (NaN where missing) of a partition, as
dbt_like_sql/lens/lens_clean_input.sql selects them.

0. timestamps round to 10 ms ticks, half to even (as pandas' Series.dt.round('10ms') does);
1. duplicates of a tick keep the row with the first original timestamp (file order on ties);
2. groups start at the first second ending in 12/27/42/57 at or after the first sample
   (tick % 1500 == 1200: Starlink reconfigures every 15 s); group = (tick - start) // 1500;
3. the last group is dropped (the end of the data cuts it off); groups need MORE than
   ``min_samples`` observed points of 1500;
4. each kept group is laid on its 1500-point grid: ``rtt_token`` fills gaps with -1,
   ``rtt_nearest`` with the nearest observed point, a tie going to the previous one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

GROUP_POINTS = 1500
SLOT_PHASE = 1200  # ticks past a multiple of 15 s: second :12 (and :27, :42, :57)
TICK_US = 10_000  # one 10 ms tick in microseconds
TICK_NS = 10_000_000
HALF_TICK_NS = TICK_NS // 2


def ticks_10ms(timestamp_ns: np.ndarray) -> np.ndarray:
    """Round nanosecond stamps to 10 ms ticks, half to even (np.rint), exact for stamps < 2**53 ticks."""
    return np.rint(timestamp_ns / TICK_NS).astype(np.int64)


@dataclass(frozen=True)
class KeptSamples:
    group_id: np.ndarray  # per observed sample of a kept group
    slot: np.ndarray
    rtt: np.ndarray
    start_tick: int
    duplicate_ticks: int  # rows dropped because an earlier stamp had the same tick


def kept_samples(tick: np.ndarray, timestamp: np.ndarray, rtt: np.ndarray, min_samples: int) -> KeptSamples:
    if len(tick) == 0:
        return KeptSamples(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), 0, 0)
    if np.any(timestamp[1:] < timestamp[:-1]):  # rows are usually in time order already
        order = np.argsort(timestamp, kind="stable")
        tick, rtt = tick[order], rtt[order]
    # Rounding is monotone, so in time order a tick's first row is its first stamp.
    first = np.ones(len(tick), dtype=bool)
    first[1:] = tick[1:] != tick[:-1]
    tick, rtt = tick[first], rtt[first]

    start_tick = int(tick[0] + (SLOT_PHASE - tick[0]) % GROUP_POINTS)
    aligned = tick >= start_tick
    offset = tick[aligned] - start_tick
    rtt = rtt[aligned]
    if len(offset) == 0:
        return KeptSamples(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), start_tick, int((~first).sum()))
    group_id, slot = offset // GROUP_POINTS, offset % GROUP_POINTS
    observed = ~np.isnan(rtt)
    observed_per_group = np.bincount(group_id[observed], minlength=int(group_id[-1]) + 1)
    kept_group = observed_per_group > min_samples
    kept_group[-1] = False  # the last group is cut off by the end of the data
    keep = observed & kept_group[group_id]
    return KeptSamples(group_id[keep], slot[keep], rtt[keep], start_tick, int((~first).sum()))


def fill_grids(group_id: np.ndarray, slot: np.ndarray, rtt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group ids, token grid, nearest grid) from the observed samples of kept groups."""
    groups, row = np.unique(group_id, return_inverse=True)
    token = np.full((len(groups), GROUP_POINTS), -1.0)
    token[row, slot] = rtt
    observed = token != -1.0
    positions = np.arange(GROUP_POINTS)
    prev = np.maximum.accumulate(np.where(observed, positions, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(observed, positions, 2 * GROUP_POINTS)[:, ::-1], axis=1)[:, ::-1]
    take_prev = (prev >= 0) & ((nxt >= GROUP_POINTS) | (positions - prev <= nxt - positions))
    nearest = np.take_along_axis(token, np.where(take_prev, prev, nxt), axis=1)
    return groups, token, nearest


def clean_groups_table(samples: KeptSamples, day: dt.date, region: str, min_samples: int) -> pa.Table:
    groups, token, nearest = fill_grids(samples.group_id, samples.slot, samples.rtt)
    n = len(groups)

    def as_lists(grid: np.ndarray) -> pa.ListArray:
        offsets = pa.array(np.arange(0, (n + 1) * GROUP_POINTS, GROUP_POINTS, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(grid.ravel()))

    return pa.table(
        {
            "day": pa.array([day] * n, pa.date32()),
            "region": pa.array([region] * n, pa.string()),
            "group_id": pa.array(groups, pa.int64()),
            "group_start": pa.array((samples.start_tick + groups * GROUP_POINTS) * TICK_US, pa.timestamp("us")),
            "n_observed": pa.array((token != -1.0).sum(axis=1), pa.int16()),
            "min_samples": pa.array(np.full(n, min_samples), pa.int16()),
            "rtt_token": as_lists(token),
            "rtt_nearest": as_lists(nearest),
        }
    )
