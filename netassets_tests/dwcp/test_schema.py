"""Bad landing files: each refusal names the file, the line and the field; the file is left as it was."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from netassets.dwcp import sample
from netassets.dwcp.schema import RawFileError, read_raw_file, scan_landing

from .conftest import DAYS, REGION, generator_args

DAY = dt.date.fromisoformat(DAYS[0])
COLUMN_INDEX = {"link_type": 3, "throughput_mbps": 8, "packet_loss": 11, "timestamp": 0, "rtt_ms": 6}


@pytest.fixture
def day_file(tmp_path):
    return sample.generate(generator_args(tmp_path, days=1))[0]


def _set_field(path, line_no, column, value):
    lines = path.read_text().splitlines()
    fields = lines[line_no - 1].split(",")
    fields[COLUMN_INDEX[column]] = value
    lines[line_no - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("column,value,expected", [
    ("link_type", "satellite", "field 'link_type' outside ['dc', 'metro', 'wan']"),
    ("throughput_mbps", "-3.5", "field 'throughput_mbps' outside [0, inf]"),
    ("packet_loss", "1.2", "field 'packet_loss' outside [0, 1]"),
    ("packet_loss", "-0.1", "field 'packet_loss' outside [0, 1]"),
    ("rtt_ms", "fast", "field 'rtt_ms' is not Float64"),
    ("rtt_ms", "", "field 'rtt_ms' empty"),
    ("timestamp", "1704067200", "outside 2024-01-05"),
])
def test_bad_value_is_refused_with_file_line_and_field(day_file, column, value, expected):
    _set_field(day_file, 7, column, value)
    before = hashlib.sha256(day_file.read_bytes()).hexdigest()
    with pytest.raises(RawFileError) as error:
        read_raw_file(day_file, REGION, DAY)
    message = str(error.value)
    assert str(day_file) in message and expected in message and "line 7" in message
    assert hashlib.sha256(day_file.read_bytes()).hexdigest() == before


def test_missing_columns_are_named(day_file):
    lines = day_file.read_text().splitlines()
    day_file.write_text("\n".join(",".join(line.split(",")[:-2]) for line in lines) + "\n")
    with pytest.raises(RawFileError, match=r"missing column\(s\) \['time_of_day', 'day_of_week'\]"):
        read_raw_file(day_file, REGION, DAY)


def test_wrong_region_and_duplicates_are_refused(day_file):
    with pytest.raises(RawFileError, match="differs from the partition's region 'eu-west-1'"):
        read_raw_file(day_file, "eu-west-1", DAY)
    lines = day_file.read_text().splitlines()
    day_file.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(RawFileError, match=r"duplicate \(node_id, peer_id, timestamp\)"):
        read_raw_file(day_file, REGION, DAY)


def test_extra_columns_are_ignored_and_reported(day_file):
    lines = day_file.read_text().splitlines()
    day_file.write_text("\n".join([lines[0] + ",bandwidth_mbps", *(line + ",1.0" for line in lines[1:])]) + "\n")
    frame, ignored = read_raw_file(day_file, REGION, DAY)
    assert ignored == ["bandwidth_mbps"] and "bandwidth_mbps" not in frame.columns


def test_scan_finds_region_day_files_only(landing):
    (landing / REGION / "notes.txt").write_text("not a day file")
    (landing / REGION / "2024-01-07.csv.tmp").write_text("half written")
    assert sorted(scan_landing()) == [(day, REGION) for day in DAYS]


def test_unreadable_csv_names_the_file_and_the_line(day_file):
    lines = day_file.read_text().count("\n")
    day_file.write_text(day_file.read_text() + "1,2,3," + "x," * 30 + "\n")
    with pytest.raises(RawFileError, match=f"{day_file}: line {lines + 1}: 34 fields, the header has 20"):
        read_raw_file(day_file, REGION, DAY)


def test_a_column_named_twice_in_the_header_is_refused(day_file):
    """polars renamed the second copy (timestamp_duplicated_0) and read the first as the column:
    a header that named rtt's column throughput_mbps loaded rtt as throughput."""
    text = day_file.read_text()
    header, rest = text.split("\n", 1)
    day_file.write_text(header.replace("rtt_ms", "throughput_mbps") + "\n" + rest)
    with pytest.raises(RawFileError, match=r"line 1: column\(s\) \['throughput_mbps'\] appear more than once"):
        read_raw_file(day_file, REGION, DAY)
