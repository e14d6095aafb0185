"""Each bad LENS input gives a clear error naming the file and line (or documented handling);
raw files are never modified and a failed run leaves the previous partition intact."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import time
from pathlib import Path

import pytest

from netassets.core.metadata import shown_float
from netassets.core.partitions import parse_partition_key
from netassets.lens.raw import hour_path
from netassets.lens.sample import write_lens
from netassets_tests.lens.conftest import DAY, LOW_RATE_CONFIG, LOW_RATE_HZ, failure_message, lens_metadata, materialize_lens

REGION = "badcase"
KEY = f"{DAY.isoformat()}|{REGION}"
DAY_START_NS = int(dt.datetime(2023, 11, 1, tzinfo=dt.timezone.utc).timestamp()) * 10**9


ROWS_PER_HOUR = 36_000  # a 10 Hz hour keeps these cases fast


@pytest.fixture(scope="module")
def low_rate_hour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("low_rate")
    write_lens(root, [REGION], DAY, days=1, seed=3, hours=1, rate_hz=LOW_RATE_HZ)
    return root


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, netassets_home: Path, low_rate_hour: Path) -> Path:
    root = tmp_path / "lens_root"
    shutil.copytree(low_rate_hour, root)
    monkeypatch.setenv("NETASSETS_LENS_ROOT", str(root))
    return root


def materialize(warehouse, instance):
    return materialize_lens(warehouse, instance, KEY, run_config=LOW_RATE_CONFIG)


def hour0(root: Path) -> Path:
    return hour_path(root, REGION, DAY, 0)


def add_hour(root: Path, hour: int, text: str) -> Path:
    path = hour_path(root, REGION, DAY, hour)
    path.write_text(text)
    return path


def in_day_ns(hour: int, second: int) -> int:
    return DAY_START_NS + (hour * 3600 + second) * 10**9


def digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.csv"))}


def test_missing_hours_are_reported_not_fatal(root, warehouse, instance):
    result = materialize(warehouse, instance)
    assert result.success
    assert lens_metadata(result, "lens_raw_irtt")["missing_hours"].value == list(range(1, 24))


def test_renamed_column_names_the_file(root, warehouse, instance):
    path = add_hour(root, 1, f"timestamp,latency,uplink,downlink\n{in_day_ns(1, 0)},30.0,10.0,20.0\n")
    result = materialize(warehouse, instance)
    message = failure_message(result)
    assert str(path) in message and "line 1" in message and "missing ['rtt']" in message and "latency" in message


def test_missing_column_names_the_file(root, warehouse, instance):
    path = add_hour(root, 1, f"timestamp,rtt,uplink\n{in_day_ns(1, 0)},30.0,10.0\n")
    message = failure_message(materialize(warehouse, instance))
    assert str(path) in message and "missing ['downlink']" in message


def test_non_numeric_rtt_names_file_line_and_column(root, warehouse, instance):
    body = "".join(f"{in_day_ns(1, i)},30.{i},10.0,20.0\n" for i in range(5))
    path = add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body + f"{in_day_ns(1, 9)},abc,10.0,20.0\n")
    message = failure_message(materialize(warehouse, instance))
    assert str(path) in message and "line 7" in message and "'rtt'" in message and "abc" in message


@pytest.mark.parametrize("bad_line, column", [(",30.0,10.0,20.0", "timestamp"), ("{ns},,10.0,20.0", "rtt")])
def test_an_empty_field_names_file_line_and_column(root, warehouse, instance, bad_line, column):
    # DuckDB reads an empty field as NULL; a NULL stamp would otherwise reach the cleaning as 0.
    body = "".join(f"{in_day_ns(1, i)},30.0,10.0,20.0\n" for i in range(3))
    path = add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body + bad_line.format(ns=in_day_ns(1, 5)) + "\n")
    message = failure_message(materialize(warehouse, instance))
    assert f"{path}: line 5: column {column!r} is empty" in message


def test_truncated_last_line_is_dropped_and_counted(root, warehouse, instance):
    body = "".join(f"{in_day_ns(1, i)},30.0,10.0,20.0\n" for i in range(5))
    add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body + f"{in_day_ns(1, 6)},30.")  # cut mid-write
    result = materialize(warehouse, instance)
    assert result.success
    metadata = lens_metadata(result, "lens_raw_irtt")
    assert metadata["truncated_lines_dropped"].value == 1
    assert metadata["dagster/row_count"].value == ROWS_PER_HOUR + 5


def test_bad_line_in_the_middle_is_not_mistaken_for_truncation(root, warehouse, instance):
    body = f"{in_day_ns(1, 0)},30.0\n" + "".join(f"{in_day_ns(1, i)},30.0,10.0,20.0\n" for i in range(1, 5))
    path = add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body)
    message = failure_message(materialize(warehouse, instance))
    assert str(path) in message and "line 2" in message and "missing columns" in message


def test_empty_file_is_reported_like_a_missing_hour(root, warehouse, instance):
    add_hour(root, 1, "")
    add_hour(root, 2, "timestamp,rtt,uplink,downlink\n")
    result = materialize(warehouse, instance)
    assert result.success
    metadata = lens_metadata(result, "lens_raw_irtt")
    assert sorted(metadata["empty_files"].value) == [hour_path(root, REGION, DAY, h).name for h in (1, 2)]


def test_only_empty_files_is_an_error(root, warehouse, instance):
    hour0(root).write_text("")
    message = failure_message(materialize(warehouse, instance))
    assert "no hour files with data" in message and REGION in message


def test_duplicate_timestamps_are_counted_and_cleaned_first_wins(root, warehouse, instance):
    original = hour0(root).read_text().splitlines()
    duplicates = [line.split(",")[0] + ",999.0,1.0,1.0" for line in original[1:4]]
    add_hour(root, 1, "\n".join([original[0]] + duplicates) + "\n")
    result = materialize(warehouse, instance)
    assert result.success  # a handful of duplicates is within the raw check's tolerance
    assert lens_metadata(result, "lens_clean_groups")["duplicate_ticks_dropped"].value == 3
    worst = warehouse.query("SELECT max(list_max(lens_rtt_token(rtt_nearest, rtt_observed))) FROM lens_clean_groups").item()
    assert worst < 999.0  # the later duplicates lost to the first stamps


def test_a_day_of_files_filed_under_the_wrong_date_is_an_error(root, warehouse, instance):
    wrong_day_ns = DAY_START_NS + 3 * 86_400 * 10**9
    body = "".join(f"{wrong_day_ns + i * 10**7},30.0,10.0,20.0\n" for i in range(5_000))
    path = add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body)
    message = failure_message(materialize(warehouse, instance))
    assert "outside 2023-11-01" in message and path.name in message


def test_a_few_rows_past_midnight_are_dropped_and_counted(root, warehouse, instance):
    body = "".join(f"{DAY_START_NS + 86_400 * 10**9 + i * 10**7},30.0,10.0,20.0\n" for i in range(3))
    add_hour(root, 23, "timestamp,rtt,uplink,downlink\n" + body)
    result = materialize(warehouse, instance)
    assert result.success
    assert lens_metadata(result, "lens_raw_irtt")["rows_outside_day_dropped"].value == 3


def test_stamps_exactly_half_a_tick_from_midnight_go_to_the_even_tick(root, warehouse, instance):
    # A stamp belongs to the day of its 10 ms tick, rounded half to even; midnight is an even
    # tick, so exactly 5 ms before each midnight rounds onto it: in at the start, out at the end.
    day_end_ns = DAY_START_NS + 86_400 * 10**9
    half = 5 * 10**6
    add_hour(root, 22, "timestamp,rtt,uplink,downlink\n" + "".join(
        f"{ns},30.0,10.0,20.0\n" for ns in (day_end_ns - half - 1, day_end_ns - half)))  # in, out
    add_hour(root, 23, "timestamp,rtt,uplink,downlink\n" + "".join(
        f"{ns},-1,-1,-1\n" for ns in (DAY_START_NS - half - 1, DAY_START_NS - half)))  # out (lost), in (lost)
    result = materialize(warehouse, instance)
    metadata = lens_metadata(result, "lens_raw_irtt")
    assert metadata["rows_outside_day_dropped"].value == 2
    kept = set(warehouse.query("SELECT timestamp FROM lens_raw_irtt_rows(?, ?)", [DAY, REGION])["timestamp"].to_list())
    assert {day_end_ns - half - 1, DAY_START_NS - half} <= kept
    assert not {day_end_ns - half, DAY_START_NS - half - 1} & kept
    lost = warehouse.query("SELECT avg((rtt <= 0)::INT) FROM lens_raw_irtt_rows(?, ?)", [DAY, REGION]).item()
    assert metadata["lost_packet_share"].value == shown_float(lost)  # over the rows kept, not as read


@pytest.mark.parametrize("region", ["../etc", "a'; DROP TABLE x; --", "a/b", "", "..", "x y"])
def test_region_names_with_path_or_sql_characters_are_rejected(region):
    with pytest.raises(ValueError, match="invalid region"):
        parse_partition_key(f"{DAY.isoformat()}|{region}", "region")


def test_bad_day_is_rejected():
    with pytest.raises(ValueError, match="invalid day"):
        parse_partition_key("2023-13-45|chicago", "region")


def test_raw_files_are_never_modified_and_failures_keep_the_previous_partition(root, warehouse, instance):
    assert materialize(warehouse, instance).success
    before_rows = warehouse.query("SELECT sum(rows)::BIGINT FROM lens_raw_irtt").item()
    before_groups = warehouse.query("SELECT count(*) FROM lens_clean_groups").item()
    add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + f"{in_day_ns(1, 0)},oops,1,1\n" + f"{in_day_ns(1, 1)},30,1,1\n")
    files_before = digests(root)
    assert not materialize(warehouse, instance).success
    assert digests(root) == files_before
    assert warehouse.query("SELECT sum(rows)::BIGINT FROM lens_raw_irtt").item() == before_rows
    assert warehouse.query("SELECT count(*) FROM lens_clean_groups").item() == before_groups


def test_lost_packets_written_as_rtt_zero_are_lost_not_an_error(root, warehouse, instance):
    # The seed counts rtt <= 0 as missing; some captures write a lost packet as 0.
    body = "".join(f"{in_day_ns(1, i)},0,0,0\n" for i in range(5)) + f"{in_day_ns(1, 6)},30.0,10.0,20.0\n"
    add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body)
    result = materialize(warehouse, instance)
    assert result.success
    metadata = lens_metadata(result, "lens_raw_irtt")
    lost = warehouse.query("SELECT count(*) FROM lens_raw_irtt_rows(?, ?) WHERE rtt <= 0", [DAY, REGION]).item()
    assert lost >= 5 and metadata["lost_packet_share"].value == shown_float(lost / metadata["dagster/row_count"].value)


def test_scientific_notation_stamps_name_the_file_and_line(root, warehouse, instance):
    body = "".join(f"{in_day_ns(1, i):.6e},30.0,10.0,20.0\n" for i in range(5))
    path = add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body)
    message = failure_message(materialize(warehouse, instance))
    assert f"{path}: line 2: column 'timestamp'" in message and "not integer nanoseconds" in message
    assert "outside" not in message  # not blamed on a wrong date


@pytest.mark.parametrize("stamp", ["{ns}.7", "{ns:.15e}"])
def test_a_decimal_or_scientific_stamp_after_the_first_line_is_named_not_rounded(root, warehouse, instance, stamp):
    """Only line 2 was looked at; a later one sent polars to DuckDB's reader, whose BIGINT column
    rounded it through a double and stored the changed stamp."""
    body = "".join(f"{in_day_ns(1, i)},30.0,10.0,20.0\n" for i in range(5))
    bad = stamp.format(ns=in_day_ns(1, 5))
    path = add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + body + f"{bad},30.0,10.0,20.0\n")
    message = failure_message(materialize(warehouse, instance))
    assert f"{path}: line 7: column 'timestamp': '{bad}' is not integer nanoseconds" in message


def test_a_blank_line_before_the_data_is_skipped_not_the_whole_file(root, warehouse, instance):
    """A file whose second line was blank was taken for an empty one: its rows were dropped and
    the run succeeded. The readers skip a blank line, as the seed's pandas.read_csv does."""
    body = "".join(f"{in_day_ns(1, i)},30.0,10.0,20.0\n" for i in range(300))
    add_hour(root, 1, "timestamp,rtt,uplink,downlink\n\n" + body)
    result = materialize(warehouse, instance)
    assert result.success
    metadata = lens_metadata(result, "lens_raw_irtt")
    assert metadata["dagster/row_count"].value == ROWS_PER_HOUR + 300 and metadata["empty_files"].value == []


def test_a_bad_value_under_a_quoted_header_or_in_quotes_is_named_at_its_line(root, warehouse, instance):
    body = "".join(f"{in_day_ns(1, i)},30.0,10.0,20.0\n" for i in range(5))
    path = add_hour(root, 1, '"timestamp","rtt","uplink","downlink"\n' + body + f'{in_day_ns(1, 5)},"-7.5",10.0,20.0\n')
    message = failure_message(materialize(warehouse, instance))
    assert f"{path}: line 7: column 'rtt': value '-7.5' is neither the lost marker" in message


@pytest.mark.parametrize("content", [
    bytes(range(256)) * 40,                                    # binary junk, 10 KB, no newline among the first bytes
    b"\x1f\x8b\x08\x00" + bytes(range(7, 250)) * 30 + b"\n" * 3,  # a gzip stream named .csv
    b"\x00\xff" * 4096 + b"\n" + b"\x01" * 4096,               # junk with a newline past the header limit
])
def test_binary_files_get_a_short_escaped_error(root, warehouse, instance, content):
    path = hour_path(root, REGION, DAY, 1)
    path.write_bytes(content)
    message = failure_message(materialize(warehouse, instance))
    assert str(path) in message and "line 1" in message
    assert len(message) < 700, f"error quotes too much input ({len(message)} characters)"
    assert "\x00" not in message and "\x1f" not in message


def test_a_huge_headerless_file_is_refused_from_its_first_kilobyte(root, warehouse, instance):
    path = hour_path(root, REGION, DAY, 1)
    with path.open("wb") as handle:  # 16 MB of digits and commas, no newline at all
        handle.write((b"1698796800123456789,30.0,10.0,20.0," * 480_000))
    message = failure_message(materialize(warehouse, instance))
    assert str(path) in message and "no header line within 1024 bytes" in message and len(message) < 700


def test_a_link_out_of_the_landing_root_is_refused_unread(root, tmp_path, warehouse, instance):
    outside = tmp_path / "secret.csv"
    outside.write_text("top secret first line,a,b,c\n1,2,3,4\n")
    hour_path(root, REGION, DAY, 1).symlink_to(outside)
    result = materialize(warehouse, instance)
    message = failure_message(result)
    assert str(hour_path(root, REGION, DAY, 1)) in message and "outside the landing root" in message
    logged = " ".join(str(e.message) for e in instance.all_logs(result.run_id))
    assert "top secret" not in message and "top secret" not in logged


def test_far_outside_the_day_warns_in_the_run_log(root, warehouse, instance):
    add_hour(root, 1, "timestamp,rtt,uplink,downlink\n" + f"{in_day_ns(1, 0)},30.0,10.0,20.0\n"
             + "86400000000000,30.0,10.0,20.0\n")  # 1970-01-02: a clock reset
    result = materialize(warehouse, instance)
    assert result.success
    assert lens_metadata(result, "lens_raw_irtt")["rows_outside_day_dropped"].value == 1
    warnings = [e.message for e in instance.all_logs(result.run_id) if e.level == 30 and "outside 2023-11-01" in str(e.message)]
    assert warnings and "more than a minute away" in warnings[0]


@pytest.mark.fault("a landing file growing while the run reads it")
def test_a_file_still_being_written_is_not_materialised(root, warehouse, instance, record_property):
    import threading

    assert materialize(warehouse, instance).success
    before = warehouse.query("SELECT sum(rows)::BIGINT FROM lens_raw_irtt").item()
    path = add_hour(root, 1, "timestamp,rtt,uplink,downlink\n")
    done = threading.Event()

    def copy_in_progress():  # a real writer appending while the run reads
        with path.open("a") as handle:
            i = 0
            while not done.is_set():
                handle.write(f"{in_day_ns(1, 0) + i * 10**7},30.0,10.0,20.0\n")
                handle.flush()
                i += 1
                time.sleep(0.002)

    writer = threading.Thread(target=copy_in_progress)
    writer.start()
    try:
        time.sleep(0.1)
        message = failure_message(materialize(warehouse, instance))
    finally:
        done.set()
        writer.join()
    assert str(path) in message and "changed while it was read" in message
    after = warehouse.query("SELECT sum(rows)::BIGINT FROM lens_raw_irtt").item()
    record_property("rows_lost", before - after)
    assert after == before


def test_a_valid_but_too_short_day_changes_neither_raw_nor_clean(root, warehouse, instance):
    # Raw and clean are written in one transaction: a day that cleans into no group leaves both
    # tables on the previous files, never new raw rows beside old groups.
    assert materialize(warehouse, instance).success
    before = warehouse.query("SELECT (SELECT sum(rows)::BIGINT FROM lens_raw_irtt), (SELECT count(*) FROM lens_clean_groups)").row(0)
    hour0(root).write_text("timestamp,rtt,uplink,downlink\n"
                           + "".join(f"{in_day_ns(0, 12) + i * 10**7},30.0,10.0,20.0\n" for i in range(20)))
    message = failure_message(materialize(warehouse, instance))
    assert "no 15 s group" in message and "neither table was changed" in message
    after = warehouse.query("SELECT (SELECT sum(rows)::BIGINT FROM lens_raw_irtt), (SELECT count(*) FROM lens_clean_groups)").row(0)
    assert after == before
