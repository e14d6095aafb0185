"""Flows are split by whole partitions (days, else day x site), else in capture order; never by hash."""

import datetime as dt

import polars as pl
import pytest

from netassets.traffic.split import assign_splits


def flows(partitions: dict[tuple[str, str], int]) -> pl.DataFrame:
    """``n`` flows per (day, site), listed out of capture order to show the split sorts them."""
    rows = [(dt.date.fromisoformat(day), site, f"{site}/{day}/f.csv", line, 100 * line)
            for (day, site), n in partitions.items() for line in range(n, 0, -1)]
    return pl.DataFrame(rows, schema=["day", "site", "source_file", "line_no", "byte_offset"], orient="row")


def sides(frame: pl.DataFrame, column: str) -> dict[str, set]:
    return {split: set(group[column].to_list()) for (split,), group in frame.group_by("split")}


def test_three_days_or_more_split_by_day_with_every_site_of_a_day_together():
    days = [f"2024-01-0{d}" for d in range(1, 7)]
    frame, rule = assign_splits(flows({(day, site): 5 for day in days for site in ("a", "b")}), 0.2, 0.2)
    by_day = sides(frame.with_columns(pl.col("day").cast(pl.String)), "day")
    assert by_day == {"train": set(days[:4]), "val": {days[4]}, "test": {days[5]}}
    assert rule.startswith("by day partition") and "test 2024-01-06" in rule


def test_fewer_days_split_by_day_then_site():
    frame, rule = assign_splits(flows({("2024-01-01", "a"): 4, ("2024-01-01", "b"): 4, ("2024-01-02", "a"): 4}), 0.2, 0.2)
    by_partition = sides(frame.with_columns(key=pl.format("{}|{}", "day", "site")), "key")
    assert by_partition == {"train": {"2024-01-01|a"}, "val": {"2024-01-01|b"}, "test": {"2024-01-02|a"}}
    assert rule.startswith("by day|site partition")


def test_one_partition_falls_back_to_capture_order_and_says_so():
    frame, rule = assign_splits(flows({("2024-01-01", "a"): 20}), 0.15, 0.15)
    assert frame["line_no"].to_list() == list(range(1, 21))  # capture order, whatever order it came in
    assert frame["split"].to_list() == ["train"] * 14 + ["val"] * 3 + ["test"] * 3
    assert rule.startswith("fallback, only 1 partition(s) (2024-01-01|a)") and "last 3 test" in rule


def test_bad_fractions_and_too_few_flows_are_refused():
    with pytest.raises(ValueError, match="val_fraction"):
        assign_splits(flows({("2024-01-01", "a"): 20}), 0.5, 0.5)
    with pytest.raises(ValueError, match="at least 3 rows"):
        assign_splits(flows({("2024-01-01", "a"): 2}), 0.15, 0.15)


def test_real_cicdoh_flows_get_their_capture_day(shared_data):
    from bench.traffic_real import FILES, flow_index

    if not all((shared_data / "traffic" / name).is_file() for name in FILES):
        pytest.skip(f"CIC-DoH flows not in {shared_data / 'traffic'}")
    frame, rule = assign_splits(flow_index(shared_data / "traffic"), 0.25, 0.25)
    assert len(frame) == 1200
    # each capture day holds flows of both files: the files are not separate captures
    per_day = frame.group_by("day").agg(pl.col("source_file").n_unique().alias("files"), pl.len())
    assert per_day.filter(pl.col("len") > 50)["files"].min() == 2
    test_days = sides(frame.with_columns(pl.col("day").cast(pl.String)), "day")["test"]
    assert test_days == {"2020-03-26", "2020-03-31"} and "test 2020-03-26, 2020-03-31" in rule
