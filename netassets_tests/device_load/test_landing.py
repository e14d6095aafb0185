"""Landing files: the real sample loads as is; each kind of bad input names its file and line."""

from __future__ import annotations

import datetime as dt

import pytest

from netassets.core.settings import landing_dir
from netassets.device_load.landing import DeviceLoadInputError, read_device_file, read_landing, scan_partitions

from .helpers import HEADER, hourly, write_csv

GOOD = ("nl-ams-sw-01", "Gi0/1", "2025-06-20 10:00:00", 10.0, 5.0)


def test_real_sample_loads_as_is(shared_data):
    path = shared_data / "device_load" / "device_data.csv"
    frame = read_device_file(path)
    assert frame.height == 7410
    assert frame["router"].n_unique() == 10 and frame["region"].unique().to_list() == ["nl"]
    assert frame["day"].min() == dt.date(2025, 6, 19) and frame["day"].max() == dt.date(2025, 7, 22)
    assert frame["router"][0] == "nl-xy-switch-01-GigabitEthernet10/0/2"


@pytest.mark.parametrize("header, message", [
    ("hostname,ifname,timeslot,max_metric_value\n", "missing ['mean_metric_value']"),
    ("hostname,ifname,time,max_metric_value,mean_metric_value\n", "unexpected ['time']"),
])
def test_wrong_columns(tmp_path, header, message):
    path = write_csv(tmp_path / "bad.csv", [GOOD[:4] if "mean" not in header else GOOD], header=header)
    with pytest.raises(DeviceLoadInputError, match=rf"bad.csv: line 1: .*{message.replace('[', '.').replace(']', '.')}"):
        read_device_file(path)


@pytest.mark.parametrize("bad_row, message", [
    (("nl-ams-sw-01", "Gi0/1", "20/06/2025 11:00", 1.0, 1.0), "line 3: timeslot is not"),
    (("nl-ams-sw-01", "Gi0/1", "2025-06-20 11:00:00", -1.0, 1.0), "line 3: max_metric_value is negative"),
    (("nl-ams-sw-01", "Gi0/1", "2025-06-20 11:00:00", 1.0, "NaN"), "line 3: mean_metric_value is missing or not a finite number"),
    (("nl-ams-sw-01", "Gi0/1", "2025-06-20 11:00:00", 1.0, ""), "line 3: mean_metric_value is missing"),
    (("nlamssw01", "Gi0/1", "2025-06-20 11:00:00", 1.0, 1.0), "line 3: hostname does not match the region rule"),
    (("nl-ams-sw-01", "Gi0/1", "2025-06-20 10:00:00", 2.0, 1.0), "line 2 and bad.csv: line 3: duplicate row"),
    # no datetime holds second 60: parsed, it became the next minute, here the next day's partition
    (("nl-ams-sw-01", "Gi0/1", "2025-06-20 23:59:60", 1.0, 1.0), "line 3: timeslot is a leap second"),
])
def test_bad_rows_name_file_and_line(tmp_path, bad_row, message):
    path = write_csv(tmp_path / "bad.csv", [GOOD, bad_row])
    with pytest.raises(DeviceLoadInputError, match=f"bad.csv: {message}"):
        read_device_file(path)


def test_duplicates_across_files(tmp_path):
    first = write_csv(tmp_path / "a.csv", [GOOD])
    second = write_csv(tmp_path / "b.csv", [GOOD])
    with pytest.raises(DeviceLoadInputError, match="a.csv: line 2 and b.csv: line 2: duplicate row"):
        read_landing([first, second])


def test_region_rule_is_configurable(tmp_path):
    path = write_csv(tmp_path / "ok.csv", [("ams01.nl.example", "Gi0/1", "2025-06-20 10:00:00", 1.0, 1.0)])
    assert read_device_file(path, region_pattern=r"^[^.]+\.([a-z]+)\.")["region"].to_list() == ["nl"]
    with pytest.raises(ValueError, match="exactly one capture group"):
        read_device_file(path, region_pattern=r"^[a-z]+")


def test_scan_maps_multi_day_files_to_partitions(netassets_home):
    folder = landing_dir("device_load")
    start = dt.datetime(2025, 6, 20, 22)
    write_csv(folder / "two_days.csv", hourly("nl-a-01", "Gi0/1", start, [1.0] * 3, [1.0] * 3)
              + hourly("be-b-01", "Gi0/1", start, [1.0], [1.0]) + [("de-c-01", "Gi0/1", "not a time", 1, 1)])
    write_csv(folder / "other.csv", hourly("nl-a-01", "Gi0/2", start, [1.0], [1.0]))
    (folder / "notes.txt").write_text(HEADER)
    scan = scan_partitions()
    assert sorted(scan) == [("2025-06-20", "be"), ("2025-06-20", "nl"), ("2025-06-21", "nl")]
    assert [p.name for p in scan[("2025-06-20", "nl")]] == ["other.csv", "two_days.csv"]


def test_a_broken_link_or_a_link_out_of_the_landing_folder_never_stops_the_scan(netassets_home, tmp_path):
    folder = landing_dir("device_load")
    start = dt.datetime(2025, 6, 20, 22)
    good = write_csv(folder / "good.csv", hourly("nl-a-01", "Gi0/1", start, [1.0], [1.0]))
    (folder / "gone.csv").symlink_to(tmp_path / "does-not-exist.csv")
    outside = write_csv(tmp_path / "outside.csv", hourly("be-b-01", "Gi0/1", start, [1.0], [1.0]))
    (folder / "elsewhere.csv").symlink_to(outside)
    assert scan_partitions() == {("2025-06-20", "nl"): [good]}
    with pytest.raises(DeviceLoadInputError, match="elsewhere.csv: leads outside the landing folder"):
        read_landing([folder / "elsewhere.csv", good], root=folder)


def test_a_file_changing_while_it_is_read_is_refused(netassets_home, monkeypatch):
    import netassets.device_load.landing as landing

    folder = landing_dir("device_load")
    path = write_csv(folder / "copying.csv", hourly("nl-a-01", "Gi0/1", dt.datetime(2025, 6, 20), [1.0], [1.0]))
    read_one = landing.read_device_file

    def read_while_the_copy_goes_on(file, pattern):  # the copy appends a row right after the read
        frame = read_one(file, pattern)
        with file.open("a") as handle:
            handle.write("nl-a-01,Gi0/1,2025-06-20 01:00:00,1.0,1.0\n")
        return frame

    monkeypatch.setattr(landing, "read_device_file", read_while_the_copy_goes_on)
    with pytest.raises(DeviceLoadInputError, match="changed while it was read"):
        read_landing([path])


def test_a_file_that_is_not_utf8_is_named_at_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes((HEADER + "nl-ams-sw-01,Gi0/1,2025-06-20 10:00:00,1.0,1.0\n").encode()
                     + b"nl-ams-sw-\xff1,Gi0/1,2025-06-20 11:00:00,1.0,1.0\n")
    with pytest.raises(DeviceLoadInputError, match=r"bad.csv: line 3: not UTF-8 text \(byte 0xff at column 11\)"):
        read_device_file(path)


def test_a_data_column_named_like_the_line_counter_is_an_unexpected_column(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [(*GOOD, "x")], header=HEADER.strip() + ",line\n")
    with pytest.raises(DeviceLoadInputError, match=r"bad.csv: line 1: .*unexpected .'line'."):
        read_device_file(path)


def test_a_region_rule_polars_cannot_run_is_refused_in_the_config():
    """Python's re accepts a lookahead; polars, which extracts the regions, refused it only in the step."""
    from netassets.defs.device_load.assets import RawConfig

    with pytest.raises(ValueError, match="polars' regular expressions do not support"):
        RawConfig(region_pattern=r"^([a-z]+)(?=-)")
