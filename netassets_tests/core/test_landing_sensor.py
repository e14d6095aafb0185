"""The landing sensor under bad entries and copies in progress: a broken link, a link out of the
landing root and a file still being written never stop the tick, and are never ingested."""

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from netassets.core.automation import landing_sensor

DYNAMIC = "regions_under_test"
REGIONS = dg.DynamicPartitionsDefinition(name=DYNAMIC)


@dg.asset(partitions_def=dg.MultiPartitionsDefinition({
    "day": dg.DailyPartitionsDefinition(start_date="2024-01-01"),
    "region": REGIONS}))
def raw_rows() -> None:
    ...


def _scan_of(root: Path):
    def scan():
        found = {}
        for path in sorted(root.glob("*/*/*.csv")):  # region/day/file.csv; lists broken links too
            found.setdefault((path.parent.name, path.parent.parent.name), []).append(path)
        return found
    return scan


def _tick(sensor, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return sensor(context), context


def _land(root: Path, region: str, day: str, name: str = "a.csv", text: str = "x\n1\n", age: float = 120.0) -> Path:
    path = root / region / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _sensor(root: Path, settle: float = 30.0):
    return landing_sensor(name="landing_under_test", target=[raw_rows], dynamic=REGIONS,
                          scan=_scan_of(root), description="test", root=lambda: root, settle_seconds=settle)


@pytest.mark.fault("a broken link and a link out of the root in a landing folder")
def test_bad_entries_are_skipped_and_the_rest_proceeds(tmp_path: Path, instance):
    root = tmp_path / "landing"
    _land(root, "chicago", "2024-01-02")
    broken = root / "ottawa" / "2024-01-02" / "gone.csv"
    broken.parent.mkdir(parents=True)
    broken.symlink_to(tmp_path / "does-not-exist.csv")
    secret = tmp_path / "outside.csv"
    secret.write_text("secret first line\n")
    (root / "chicago" / "2024-01-03").mkdir(parents=True)
    (root / "chicago" / "2024-01-03" / "link.csv").symlink_to(secret)
    result, _ = _tick(_sensor(root), instance)
    assert [r.partition_key for r in result.run_requests] == ["2024-01-02|chicago"]
    assert "2024-01-03|chicago" not in (result.cursor or "")


@pytest.mark.fault("a landing file growing during a sensor tick")
def test_a_file_still_being_written_waits_for_a_later_tick(tmp_path: Path, instance):
    root = tmp_path / "landing"
    _land(root, "chicago", "2024-01-02")
    growing = _land(root, "frankfurt", "2024-01-02", age=0.0)
    sensor = _sensor(root, settle=30.0)
    first, _ = _tick(sensor, instance)
    assert [r.partition_key for r in first.run_requests] == ["2024-01-02|chicago"]
    # the copy goes on, then stops; once it has been quiet for the settle interval it is taken
    growing.write_text("x\n1\n2\n3\n")
    then = time.time() - 60
    os.utime(growing, (then, then))
    second, _ = _tick(sensor, instance, cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2024-01-02|frankfurt"]


def test_a_changed_file_still_settling_keeps_the_last_complete_version(tmp_path: Path, instance):
    root = tmp_path / "landing"
    path = _land(root, "chicago", "2024-01-02")
    sensor = _sensor(root, settle=30.0)
    first, _ = _tick(sensor, instance)
    path.write_text("x\n1\n2\n")  # being replaced right now
    second, _ = _tick(sensor, instance, cursor=first.cursor)
    assert isinstance(second, dg.SkipReason) and "1 still being written" in second.skip_message


def _materialised(instance, path: Path, key: str) -> None:
    """What raw_rows records after reading ``path``: the fingerprint of the files it read."""
    from netassets.core.automation import landing_fingerprint_metadata
    from netassets.core.files import file_states

    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="raw_rows", partition=key, metadata=landing_fingerprint_metadata(file_states([path]))))


def _seeded_sensor(root: Path):
    return landing_sensor(name="landing_under_test", target=[raw_rows], dynamic=REGIONS, scan=_scan_of(root),
                          description="test", root=lambda: root, settle_seconds=30.0, fingerprint_asset="raw_rows")


def test_a_first_tick_requests_only_what_is_not_materialised_from_the_files_on_disk(tmp_path: Path, instance):
    import json

    root = tmp_path / "landing"
    done = [_land(root, region, "2024-01-02") for region in ("chicago", "denver", "austin")]
    for path in done:
        _materialised(instance, path, f"2024-01-02|{path.parent.parent.name}")
    changed = _land(root, "austin", "2024-01-02", text="x\n1\n2\n")  # changed after it was materialised
    _land(root, "boston", "2024-01-03")  # new
    sensor = _seeded_sensor(root)
    first, _ = _tick(sensor, instance)
    assert sorted(r.partition_key for r in first.run_requests) == ["2024-01-02|austin", "2024-01-03|boston"]
    assert sorted(json.loads(first.cursor)) == ["2024-01-02|austin", "2024-01-03|boston"]  # only what is in flight

    # In flight: not asked again. Once materialised with that fingerprint, gone from the cursor.
    second, context = _tick(sensor, instance, cursor=first.cursor)
    assert isinstance(second, dg.SkipReason)
    _materialised(instance, changed, "2024-01-02|austin")
    _materialised(instance, root / "boston" / "2024-01-03" / "a.csv", "2024-01-03|boston")
    third, context = _tick(sensor, instance, cursor=first.cursor)
    assert isinstance(third, dg.SkipReason)
    assert json.loads(context.cursor) == {}  # the cursor does not grow with unchanged partitions

    # A file changed again is requested again, with a new run key.
    _land(root, "chicago", "2024-01-02", text="x\n1\n2\n3\n")
    fourth, _ = _tick(sensor, instance, cursor=context.cursor)
    assert [r.partition_key for r in fourth.run_requests] == ["2024-01-02|chicago"]
    assert fourth.run_requests[0].run_key.startswith("2024-01-02|chicago@")


def test_a_day_outside_the_day_axis_is_never_requested_and_stops_nothing(tmp_path: Path, instance):
    """Requested, a day before the axis's first or after today fails the whole tick in Dagster
    (unknown partition), and every tick after it: the good partitions were never requested."""
    root = tmp_path / "landing"
    _land(root, "chicago", "2024-01-02")
    _land(root, "chicago", "2019-06-01")  # before NETASSETS_START_DATE
    _land(root, "chicago", "2099-01-01")  # a day to come
    result, _ = _tick(_sensor(root), instance)
    assert [r.partition_key for r in result.run_requests] == ["2024-01-02|chicago"]
    assert "2019-06-01" not in result.cursor and "2099-01-01" not in result.cursor


def test_a_day_folder_not_written_yyyy_mm_dd_is_refused_by_name(netassets_home: Path):
    """fromisoformat took 20231101 (basic ISO): the demo ran '20231101|edge-a', a key Dagster refused."""
    from netassets.core.settings import landing_dir
    from netassets.pipelines import pipeline

    _land(landing_dir("traffic"), "edge-a", "20231101", name="flows.csv")
    with pytest.raises(ValueError, match="landing day folder '20231101' is not a day written YYYY-MM-DD"):
        pipeline("traffic").landed_keys()
