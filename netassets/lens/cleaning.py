"""The seed's cleaning of one day x region, vectorised: samples -> kept 15 s groups on a 10 ms grid.

Input: the received samples only (rtt > 0; rtt <= 0, a lost packet, is dropped before any
rule, as the seed drops it), original timestamps (ns) in file order, as
dbt_like_sql/lens/lens_clean_input.sql selects them. The rules, each as the seed's code has it:

0. timestamps round to 10 ms ticks, half to even, in integers (as pandas' Series.dt.round('10ms');
   going through float64 would misround stamps within 256 ns of a half tick);
1. duplicates of a tick keep the row that comes first in file order (the seed's
   ``drop_duplicates`` before its sort), whatever their original stamps;
2. the grid starts at the first received sample whose second of the minute is 12, 27, 42 or
   57 (Starlink reconfigures every 15 s): that sample's own tick, so a capture starting at
   :12.5, or whose packet at :12.000 was lost, starts its grid there. group = (tick - start) // 1500;
3. the last group that holds a received sample is dropped (the end of the data cuts it off);
   groups need MORE than ``min_samples`` received points of 1500;
4. each kept group is laid on its 1500-point grid: ``rtt_token`` fills gaps with -1,
   ``rtt_nearest`` with the nearest received point, a tie going to the previous one.

Every sample lands in one grid of all the day's groups by a single scatter (a day is at most
5,761 groups, 69 MB), so grouping, counting and the token fill need no sort or group-by.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

GROUP_POINTS = 1500
SLOT_PHASE = 1200  # ticks past a multiple of 15 s: second :12 (and :27, :42, :57)
TICKS_PER_SECOND = 100
TICK_US = 10_000  # one 10 ms tick in microseconds
TICK_NS = 10_000_000
HALF_TICK_NS = TICK_NS // 2
MISSING = -1.0
MAX_SPAN_TICKS = 86_400 * 100 + 2 * GROUP_POINTS  # a day of 10 ms ticks, plus a group either side


def ticks_10ms(timestamp_ns: np.ndarray) -> np.ndarray:
    """Round nanosecond stamps to 10 ms ticks, half to even."""
    tick = (timestamp_ns + HALF_TICK_NS) // TICK_NS  # half up ...
    tick -= (tick * TICK_NS - HALF_TICK_NS == timestamp_ns) & (tick % 2 == 1)  # ... exact halves to even
    return tick


@dataclass(frozen=True)
class CleanGroups:
    group_id: np.ndarray  # kept groups, ascending
    start_tick: int  # tick of group 0's first point
    token: np.ndarray  # (groups, 1500), -1 where missing
    n_observed: np.ndarray
    duplicate_ticks: int  # rows dropped because an earlier row of the file had the same tick

    def __len__(self) -> int:
        return len(self.group_id)


def clean_groups(timestamp: np.ndarray, rtt: np.ndarray, min_samples: int) -> CleanGroups:
    """Steps 0-3 and the token grid of step 4 (see the module docstring) on received samples."""
    tick = ticks_10ms(timestamp)
    if len(tick) and np.any(tick[1:] < tick[:-1]):  # rows are usually in time order already
        order = np.argsort(tick, kind="stable")  # stable: a tick's rows stay in file order
        tick, rtt = tick[order], rtt[order]
    first = np.ones(len(tick), dtype=bool)
    first[1:] = tick[1:] != tick[:-1]
    duplicates = len(tick) - int(np.count_nonzero(first))
    if duplicates:
        tick, rtt = tick[first], rtt[first]

    in_start_second = (tick % GROUP_POINTS >= SLOT_PHASE) & (tick % GROUP_POINTS < SLOT_PHASE + TICKS_PER_SECOND)
    begin = int(np.argmax(in_start_second)) if len(tick) else 0
    if not len(tick) or not in_start_second[begin]:
        return CleanGroups(np.empty(0, np.int64), 0, np.empty((0, GROUP_POINTS)), np.empty(0, np.int64), duplicates)
    start_tick = int(tick[begin])
    offset = tick[begin:] - start_tick  # group * 1500 + slot
    if offset[-1] >= MAX_SPAN_TICKS:  # the grid below is sized by the span: refuse before allocating it
        raise ValueError(f"samples span {offset[-1] / 100:.0f} s from the first aligned group; one partition holds a day")
    grid = np.full((int(offset[-1]) // GROUP_POINTS + 1, GROUP_POINTS), MISSING)
    grid.ravel()[offset] = rtt[begin:]
    n_observed = np.count_nonzero(grid != MISSING, axis=1)
    kept = n_observed > min_samples
    kept[-1] = False  # the last group with a received sample is cut off by the end of the data
    return CleanGroups(np.flatnonzero(kept), start_tick, grid[kept], n_observed[kept], duplicates)


def nearest_fill(token: np.ndarray) -> np.ndarray:
    """Each missing point takes the nearest observed point of its row, a tie going to the previous one."""
    observed = token != MISSING
    positions = np.arange(token.shape[1])
    prev = np.maximum.accumulate(np.where(observed, positions, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(observed, positions, 2 * token.shape[1])[:, ::-1], axis=1)[:, ::-1]
    take_prev = (prev >= 0) & ((nxt >= token.shape[1]) | (positions - prev <= nxt - positions))
    return np.take_along_axis(token, np.where(take_prev, prev, nxt), axis=1)


def clean_groups_table(groups: CleanGroups, day: dt.date, region: str, min_samples: int) -> pa.Table:
    n = len(groups)

    def as_lists(grid: np.ndarray) -> pa.ListArray:
        offsets = pa.array(np.arange(0, (n + 1) * GROUP_POINTS, GROUP_POINTS, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(grid).ravel()))

    return pa.table(
        {
            "day": pa.array([day] * n, pa.date32()),
            "region": pa.array([region] * n, pa.string()),
            "group_id": pa.array(groups.group_id, pa.int64()),
            "group_start": pa.array((groups.start_tick + groups.group_id * GROUP_POINTS) * TICK_US, pa.timestamp("us")),
            "n_observed": pa.array(groups.n_observed, pa.int16()),
            "min_samples": pa.array(np.full(n, min_samples), pa.int16()),
            "rtt_token": as_lists(groups.token),
            "rtt_nearest": as_lists(nearest_fill(groups.token)),
        }
    )
