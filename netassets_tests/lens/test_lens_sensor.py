"""The LENS landing sensor: new regions become partitions, changed days become runs, once."""

from __future__ import annotations

import os
import shutil

import dagster as dg

from netassets.lens.sample import write_lens
from netassets.lens.sensors import lens_landing_sensor
from netassets_tests.lens.conftest import DAY


def tick(instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return lens_landing_sensor(context), context


def test_sensor_registers_regions_and_requests_each_partition_once(tmp_path, monkeypatch, instance):
    root = tmp_path / "lens"
    write_lens(root, ["chicago"], DAY, days=2, seed=1, hours=1, rate_hz=10)
    (root / "a'; DROP TABLE x; --" / DAY.isoformat()).mkdir(parents=True)  # a hostile folder name
    shutil.copy(next((root / "chicago" / DAY.isoformat()).glob("irtt-*.csv")),
                root / "a'; DROP TABLE x; --" / DAY.isoformat())
    monkeypatch.setenv("NETASSETS_LENS_ROOT", str(root))

    first, _ = tick(instance, None)
    assert sorted(r.partition_key for r in first.run_requests) == ["2023-11-01|chicago", "2023-11-02|chicago"]
    assert [req.partition_keys for req in first.dynamic_partitions_requests] == [["chicago"]]
    assert len({r.run_key for r in first.run_requests}) == 2

    instance.add_dynamic_partitions("lens_regions", ["chicago"])
    second, _ = tick(instance, first.cursor)
    assert isinstance(second, dg.SkipReason)

    # a new region and a changed day: exactly those two partitions
    write_lens(root, ["ottawa"], DAY, days=1, seed=2, hours=1, rate_hz=10)
    changed = root / "chicago" / "2023-11-02" / "irtt-10ms-1h-2023-11-02-01-00-00.csv"
    shutil.copy(root / "chicago" / "2023-11-02" / "irtt-10ms-1h-2023-11-02-00-00-00.csv", changed)
    os.utime(changed)
    third, _ = tick(instance, first.cursor)
    assert sorted(r.partition_key for r in third.run_requests) == ["2023-11-01|ottawa", "2023-11-02|chicago"]
    assert [req.partition_keys for req in third.dynamic_partitions_requests] == [["ottawa"]]
    # the re-run of a changed partition gets a new run key, so Dagster does not dedupe it away
    old_keys = {r.run_key for r in first.run_requests}
    assert all(r.run_key not in old_keys for r in third.run_requests)
