"""The seed's cleaning rules on hand-made raw rows with known answers, and on one-edit days
compared with the seed's rules written out in pandas (``seed_rules`` below)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from netassets.core.partitions import DayPartition
from netassets.lens.cleaning import observed_mask, token_fill
from netassets.lens.features import series_matrix
from netassets.lens.ingest import RawRows, clean_partition, received_in_day

DAY = dt.date(2023, 11, 1)
DAY_START_NS = int(dt.datetime(2023, 11, 1, tzinfo=dt.timezone.utc).timestamp()) * 10**9
TICK_NS = 10_000_000
# Aligned group starts: seconds :12/:27/:42/:57. 2023-11-01T00:00:00Z is a multiple of 15 s.
GROUP0_START_NS = DAY_START_NS + 12 * 10**9


def slot_ts(group: int, slot: int, wobble_ns: int = 0) -> int:
    return GROUP0_START_NS + (group * 1500 + slot) * TICK_NS + wobble_ns


def rtt_of(group: int, slot: int) -> float:
    return 20.0 + group * 5 + slot * 0.01


def wobble(slot: int) -> int:
    """A deterministic receive-time wobble within +-4 ms: still rounds to its own tick."""
    return ((slot * 7919) % 9 - 4) * 10**6


def build_raw(
    gaps: dict[int, set[int]],
    extra_rows=(),
    values: dict[tuple[int, int], float] | None = None,
    absent: dict[int, set[int]] | None = None,
) -> pl.DataFrame:
    """Rows for groups 0..2 (2 is the partial last one) plus a few samples before the aligned start.

    ``gaps`` marks lost packets (rtt -1), ``absent`` slots have no row at all; ``values``
    overrides single (group, slot) rtts.
    """
    values, absent = values or {}, absent or {}
    rows = [(DAY_START_NS + 5 * 10**9 + i * TICK_NS, 30.0) for i in range(300)]  # 00:00:05-00:00:08, before :12
    for group in (0, 1):
        for slot in sorted(set(range(1500)) - absent.get(group, set())):
            value = -1.0 if slot in gaps.get(group, set()) else values.get((group, slot), rtt_of(group, slot))
            rows.append((slot_ts(group, slot, wobble(slot)), value))
    rows += [(slot_ts(2, slot), rtt_of(2, slot)) for slot in range(1400)]  # partial last group
    rows += list(extra_rows)
    ts, rtt = zip(*rows)
    n = len(ts)
    return pl.DataFrame(
        {
            "day": [DAY] * n, "region": ["handmade"] * n, "hour": [0] * n,
            "timestamp": list(ts), "rtt": list(rtt), "uplink": [1.0] * n, "downlink": [1.0] * n,
        }
    )


def clean(warehouse, raw: pl.DataFrame, min_samples: int = 1300) -> pl.DataFrame:
    """lens_ingest's cleaning of the rows, written to the warehouse and read back as a reader sees them."""
    partition = {"day": DAY, "region": "handmade"}
    rows = RawRows([raw["timestamp"].to_numpy()], [raw["rtt"].to_numpy()], truncated=[], reader="polars")
    _, table = clean_partition(DayPartition(DAY, "handmade"), *received_in_day(rows, None), min_samples)
    warehouse.replace_partition("lens_clean_groups", partition, data=table)
    groups = warehouse.read_partition("lens_clean_groups", partition, order_by="group_id")
    token = token_fill(series_matrix(groups["rtt_nearest"]), observed_mask(groups["rtt_observed"].to_list()))
    return groups.with_columns(rtt_token=pl.Series(list(token)))


# group 0: 10 single gap; 20-21 gap of two; 30-32 gap of three (31 is a tie); last point missing.
# (A lost first point would move the grid's start: see test_first_packet_of_the_start_second_lost.)
GROUP0_GAPS = {10, 20, 21, 30, 31, 32, 1499}
# group 1: exactly 1301 observed points.
GROUP1_GAPS = set(range(100, 299))


@pytest.fixture
def cleaned(warehouse) -> pl.DataFrame:
    duplicate_of_slot5 = (slot_ts(0, 5, 3 * 10**6), 999.0)  # same 10 ms tick as slot 5, later in the file: dropped
    raw = build_raw({0: GROUP0_GAPS, 1: GROUP1_GAPS}, [duplicate_of_slot5], values={(0, 40): 0.0})
    return clean(warehouse, raw)


def test_groups_align_to_seconds_12_27_42_57_and_drop_partial_last(cleaned):
    assert cleaned["group_id"].to_list() == [0, 1]
    starts = cleaned["group_start"].to_list()
    assert [s.second for s in starts] == [12, 27]
    assert all(s.microsecond == 0 for s in starts)


def test_every_group_is_a_1500_point_grid(cleaned):
    assert all(len(x) == 1500 for x in cleaned["rtt_token"].to_list())
    assert all(len(x) == 1500 for x in cleaned["rtt_nearest"].to_list())


def test_token_fill_marks_missing_with_minus_one(cleaned):
    token = cleaned["rtt_token"][0].to_list()
    for slot in GROUP0_GAPS | {40}:
        assert token[slot] == -1.0, slot
    assert token[1] == pytest.approx(rtt_of(0, 1))
    # de-duplication keeps the tick's first row in file order, not the later 999
    assert token[5] == pytest.approx(rtt_of(0, 5))
    assert cleaned["n_observed"][0] == 1500 - len(GROUP0_GAPS | {40})


def test_nearest_fill_and_its_tie_rule(cleaned):
    nearest = cleaned["rtt_nearest"][0].to_list()
    assert nearest[10] == pytest.approx(rtt_of(0, 9))  # equidistant: the previous one
    assert nearest[20] == pytest.approx(rtt_of(0, 19))
    assert nearest[21] == pytest.approx(rtt_of(0, 22))
    assert nearest[30] == pytest.approx(rtt_of(0, 29))
    assert nearest[31] == pytest.approx(rtt_of(0, 29))  # tie between 29 and 33 goes to the previous
    assert nearest[32] == pytest.approx(rtt_of(0, 33))
    assert nearest[40] == pytest.approx(rtt_of(0, 39))  # rtt 0 counts as missing
    assert nearest[1499] == pytest.approx(rtt_of(0, 1498))  # nothing after: the previous one
    assert min(nearest) > 0


def test_threshold_edge_is_strictly_more_than(warehouse):
    raw = build_raw({0: GROUP0_GAPS, 1: GROUP1_GAPS})
    assert clean(warehouse, raw, min_samples=1300)["group_id"].to_list() == [0, 1]  # 1301 > 1300
    assert clean(warehouse, raw, min_samples=1301)["group_id"].to_list() == [0]  # 1301 is not > 1301


def test_rounding_is_half_to_even(warehouse):
    # Group 0 starts on an even 10 ms tick, so slot parity is tick parity. Exactly 5 ms past
    # slot 100 rounds down to even slot 100; 5 ms past slot 101 rounds up to even slot 102
    # (pandas' Series.dt.round behaviour). Rounding half away from zero would put 777 on slot 101.
    raw = build_raw({}, absent={0: {100, 102}}, extra_rows=[(slot_ts(0, 100, 5 * 10**6), 777.0), (slot_ts(0, 101, 5 * 10**6), 888.0)])
    token = clean(warehouse, raw)["rtt_token"][0].to_list()
    assert token[100] == 777.0
    assert token[101] == pytest.approx(rtt_of(0, 101))
    assert token[102] == 888.0


def test_rounding_is_exact_near_half_ticks():
    # Epoch nanoseconds (~1.7e18) are beyond float64's exact integers (ulp 256 ns): dividing as
    # floats misrounds stamps a few ns either side of a half tick. pandas rounds in integers.
    import numpy as np
    import pandas as pd

    from netassets.lens.cleaning import ticks_10ms

    base = DAY_START_NS + np.arange(0, 40 * TICK_NS, TICK_NS)
    stamps = np.concatenate([base + TICK_NS // 2 + delta for delta in (-300, -129, -1, 0, 1, 127, 300)])
    expected = pd.Series(pd.to_datetime(stamps, unit="ns")).dt.round("10ms").astype("int64").to_numpy() // TICK_NS
    assert (ticks_10ms(stamps) == expected).all()
    assert (np.rint(stamps / TICK_NS).astype(np.int64) != expected).any()  # the float shortcut really is wrong here


def test_rounding_in_blocks_matches_pandas_across_block_boundaries():
    # A day's stamps are rounded in blocks on two threads: every block, and each stamp either
    # side of a boundary, must round as the whole array does in pandas.
    import numpy as np
    import pandas as pd

    from netassets.lens.cleaning import TICK_BLOCK, ticks_10ms

    rng = np.random.default_rng(3)
    stamps = DAY_START_NS + rng.integers(0, 86_400 * 10**9, 5 * TICK_BLOCK + 123)
    stamps[::7] = stamps[::7] // TICK_NS * TICK_NS + TICK_NS // 2  # exact half ticks, odd and even
    stamps[TICK_BLOCK - 2:TICK_BLOCK + 2] = DAY_START_NS + TICK_NS * np.arange(4) + TICK_NS // 2
    expected = pd.Series(pd.to_datetime(stamps, unit="ns")).dt.round("10ms").astype("int64").to_numpy() // TICK_NS
    assert (ticks_10ms(stamps) == expected).all()


def test_samples_spanning_more_than_a_day_are_refused_before_the_grid_is_sized():
    import numpy as np

    from netassets.lens.cleaning import clean_groups

    stamps = np.array([GROUP0_START_NS, GROUP0_START_NS + 3 * 86_400 * 10**9], dtype=np.int64)
    with pytest.raises(ValueError, match="one partition holds a day"):
        clean_groups(stamps, np.array([20.0, 21.0]), min_samples=0)


def test_nearest_fill_at_the_ends_of_a_row():
    import numpy as np

    from netassets.lens.cleaning import MISSING, nearest_fill

    token = np.array([[MISSING, MISSING, 5.0, 6.0, MISSING]])
    assert nearest_fill(token).tolist() == [[5.0, 5.0, 5.0, 6.0, 6.0]]  # nothing before: the next; after: the previous



def test_nearest_fill_of_many_rows_in_blocks_matches_a_row_by_row_fill():
    """More rows than one block, so they are filled on two threads: each row as if alone."""
    import numpy as np

    from netassets.lens.cleaning import FILL_BLOCK_ROWS, GROUP_POINTS, MISSING, nearest_fill

    rng = np.random.default_rng(3)
    token = np.where(rng.random((2 * FILL_BLOCK_ROWS + 7, GROUP_POINTS)) < 0.3, MISSING,
                     rng.uniform(20, 80, (2 * FILL_BLOCK_ROWS + 7, GROUP_POINTS)))
    token[5, :-1], token[5, -1] = MISSING, 42.0  # one observed point, at the end
    filled = nearest_fill(token)
    for row in (0, 5, FILL_BLOCK_ROWS - 1, FILL_BLOCK_ROWS, 2 * FILL_BLOCK_ROWS + 6):
        observed = np.flatnonzero(token[row] != MISSING)
        nearest = [observed[np.argmin(np.abs(observed - slot))] for slot in range(GROUP_POINTS)]  # first minimum: the previous on a tie
        assert np.array_equal(filled[row], token[row, nearest]), row


def test_dropped_groups_are_compacted_away_in_place_as_a_boolean_index_would():
    import numpy as np

    from netassets.lens.cleaning import _kept_rows

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        grid, kept = rng.random((n, 3)), rng.random(n) < rng.random()
        assert np.array_equal(_kept_rows(grid.copy(), kept), grid[kept]), kept

# ---- one edit each against the seed's rules ---------------------------------------------------
# The seed's cleaning, step by step as its code does it (own transcription, pandas): drop rtt <= 0;
# round stamps to 10 ms; drop duplicate ticks keeping the first in file order; sort; start at the
# first remaining stamp whose second is 12/27/42/57; 15 s groups from there; drop the last group;
# keep groups with more than 1300 rows; reindex each group onto its 1500-point grid.


def seed_rules(timestamps_ns, rtt, min_samples: int = 1300):
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"timestamp": pd.Series(pd.to_datetime(np.asarray(timestamps_ns), unit="ns")).dt.round("10ms"),
                       "rtt": np.asarray(rtt, dtype=float)})
    df = df[df["rtt"] > 0]
    df = df.drop_duplicates(subset=["timestamp"]).sort_values("timestamp")
    start = df.loc[df["timestamp"].dt.second.isin([12, 27, 42, 57]), "timestamp"].min()
    df = df[df["timestamp"] >= start].copy()
    df["id"] = ((df["timestamp"] - start).dt.total_seconds() // 15).astype(int)
    df = df[df["id"] != df["id"].max()]
    df = df.groupby("id").filter(lambda g: len(g) > min_samples)
    groups = {}
    for gid, group in df.groupby("id"):
        grid = pd.date_range(start + pd.Timedelta(seconds=15 * gid), periods=1500, freq="10ms")
        groups[int(gid)] = group.set_index("timestamp")["rtt"].reindex(grid).fillna(-1.0).to_numpy()
    return start, groups


def day_rows(first_ns: int, seconds: float, lost=frozenset(), rtt_zero=frozenset()):
    """A 100 Hz capture from ``first_ns`` with a +-4 ms receive wobble; ``lost`` row indices rtt -1."""
    n = int(seconds * 100)
    rows = []
    for i in range(n):
        value = -1.0 if i in lost else (0.0 if i in rtt_zero else 20.0 + (i % 700) * 0.01)
        rows.append((first_ns + i * TICK_NS + wobble(i), value))
    return rows


def compare_with_seed(warehouse, rows):
    import numpy as np

    ts, rtt = zip(*rows)
    n = len(ts)
    raw = pl.DataFrame({"day": [DAY] * n, "region": ["handmade"] * n, "hour": [0] * n, "timestamp": list(ts),
                        "rtt": list(rtt), "uplink": [1.0] * n, "downlink": [1.0] * n})
    ours = clean(warehouse, raw)
    start, theirs = seed_rules(ts, rtt)
    assert ours["group_id"].to_list() == sorted(theirs)
    for gid, token, group_start in zip(ours["group_id"], ours["rtt_token"], ours["group_start"]):
        np.testing.assert_array_equal(np.array(token.to_list()), theirs[gid])
        assert group_start == (start + dt.timedelta(seconds=15 * gid)).to_pydatetime()
    return ours, start


def test_first_packet_of_the_start_second_lost(warehouse):
    # capture from 00:00:05; the packet at 00:00:12.000 (row 700) is lost: the seed starts at 12.010
    ours, start = compare_with_seed(warehouse, day_rows(DAY_START_NS + 5 * 10**9, 75, lost={700}))
    assert (start.second, start.microsecond) == (12, 10_000)


def test_capture_starting_inside_a_start_second(warehouse):
    ours, start = compare_with_seed(warehouse, day_rows(DAY_START_NS + 12_500_000_000, 70))
    assert (start.second, start.microsecond) == (12, 500_000)


def test_a_lost_row_never_hides_a_received_one_in_its_tick(warehouse):
    rows = day_rows(DAY_START_NS + 5 * 10**9, 75)
    stamp, value = rows[1000]
    rows.insert(1000, (stamp - 4 * 10**6 if wobble(1000) >= 0 else stamp, -1.0))  # same tick, lost, earlier in file
    ours, _ = compare_with_seed(warehouse, rows)
    assert ours["rtt_token"][0].to_list()[1000 - 700] == value


def test_duplicate_ticks_keep_the_first_row_in_file_order(warehouse):
    rows = day_rows(DAY_START_NS + 5 * 10**9, 75)
    stamp, _ = rows[1000]
    rows.insert(1000, (stamp + 2 * 10**6 if wobble(1000) <= 0 else stamp + 10**6, 555.0))  # later stamp, first in file
    ours, _ = compare_with_seed(warehouse, rows)
    assert ours["rtt_token"][0].to_list()[1000 - 700] == 555.0


def test_a_capture_ending_in_lost_packets_drops_its_last_group_with_packets(warehouse):
    # 00:00:05-00:01:35, every packet from 00:01:11 on lost. Group 3 (00:00:57-00:01:12) has 1400
    # received points, enough to keep, but it is the last group with a received packet: dropped.
    ours, _ = compare_with_seed(warehouse, day_rows(DAY_START_NS + 5 * 10**9, 90, lost=set(range(6600, 9000))))
    assert ours["group_id"].to_list() == [0, 1, 2]


def test_rtt_zero_counts_as_lost(warehouse):
    ours, _ = compare_with_seed(warehouse, day_rows(DAY_START_NS + 5 * 10**9, 75, rtt_zero={800, 801, 2500}))
    assert ours["rtt_token"][0].to_list()[100] == -1.0
