"""The seed's cleaning rules on hand-made raw rows with known answers."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from netassets.lens.assets import write_clean_groups

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
    partition = {"day": DAY, "region": "handmade"}
    warehouse.replace_partition("lens_raw_irtt", partition, data=raw)
    write_clean_groups(warehouse, DAY, "handmade", min_samples)
    return warehouse.read_partition("lens_clean_groups", partition, order_by="group_id")


# group 0: 10 single gap; 20-21 gap of two; 30-32 gap of three (31 is a tie); ends missing.
GROUP0_GAPS = {0, 10, 20, 21, 30, 31, 32, 1499}
# group 1: exactly 1301 observed points.
GROUP1_GAPS = set(range(100, 299))


@pytest.fixture
def cleaned(warehouse) -> pl.DataFrame:
    duplicate_of_slot5 = (slot_ts(0, 5, 3 * 10**6), 999.0)  # same 10 ms tick as slot 5, later stamp: dropped
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
    # de-duplication keeps the first stamp of a tick, not the later 999
    assert token[5] == pytest.approx(rtt_of(0, 5))
    assert cleaned["n_observed"][0] == 1500 - len(GROUP0_GAPS | {40})


def test_nearest_fill_and_its_tie_rule(cleaned):
    nearest = cleaned["rtt_nearest"][0].to_list()
    assert nearest[0] == pytest.approx(rtt_of(0, 1))  # nothing before: the next one
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


def test_samples_spanning_more_than_a_day_are_refused_before_the_grid_is_sized():
    import numpy as np

    from netassets.lens.cleaning import clean_groups

    stamps = np.array([GROUP0_START_NS, GROUP0_START_NS + 3 * 86_400 * 10**9], dtype=np.int64)
    with pytest.raises(ValueError, match="one partition holds a day"):
        clean_groups(stamps, np.array([20.0, 21.0]), min_samples=0)
