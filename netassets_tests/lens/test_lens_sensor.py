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


def test_the_ingest_job_makes_every_per_partition_asset_that_needs_no_model(low_rate_root, warehouse, instance):
    from netassets.definitions import defs
    from netassets_tests.lens.conftest import LOW_RATE_CONFIG

    instance.add_dynamic_partitions("lens_regions", ["chicago"])
    job = defs.resolve_job_def("lens_ingest_job")  # the sensor's and the daily schedule's target
    result = job.execute_in_process(partition_key=f"{DAY}|chicago", instance=instance, run_config=LOW_RATE_CONFIG)
    assert result.success
    made = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert made == {"lens_raw_irtt", "lens_clean_groups", "lens_group_features"}
    checked = {event.asset_check_evaluation_data.asset_check_key.asset_key.to_user_string()
               for event in result.all_events if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    assert {"lens_raw_irtt", "lens_clean_groups", "lens_group_features"} <= checked
    assert warehouse.query("SELECT count(*) FROM lens_group_features").item() > 0


def test_a_gmm_retrain_reassigns_clusters_in_every_partition_with_features(instance):
    from netassets.definitions import defs
    from netassets.lens.definitions import lens_clusters_after_retrain

    def tick(cursor=None):
        """(run requests, cursor after the tick); invoked as the landing sensor tests invoke theirs."""
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        result = list(lens_clusters_after_retrain(context))
        return [r for r in result if isinstance(r, dg.RunRequest)], context.cursor

    instance.add_dynamic_partitions("lens_regions", ["chicago", "ottawa"])
    keys = [f"{DAY}|chicago", f"{DAY}|ottawa"]
    # Materialisation events as the runs would record them (no training needed to test the routing).
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization("lens_group_features", partition=key))
    assert tick() == ([], None)  # no GMM yet: nothing to re-assign

    def retrain(version: str) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization("lens_gmm", metadata={"gmm_version": version}))

    retrain("v1")
    first, cursor = tick()
    assert sorted(r.partition_key for r in first) == keys
    assert all(r.asset_selection == [dg.AssetKey("lens_clusters")] for r in first)
    assert tick(cursor)[0] == []  # the same GMM materialisation: nothing new

    retrain("v2")  # the monthly retrain
    second, cursor = tick(cursor)
    assert sorted(r.partition_key for r in second) == keys
    assert {r.run_key for r in second}.isdisjoint({r.run_key for r in first})

    retrain("v1")  # a refit back to the first model: partitions hold v2's ids, so they re-run too
    third, _ = tick(cursor)
    assert sorted(r.partition_key for r in third) == keys
    assert {r.run_key for r in third}.isdisjoint({r.run_key for r in first} | {r.run_key for r in second})


def test_re_made_features_re_assign_that_partitions_clusters_once_a_gmm_exists(instance):
    from netassets.lens.definitions import lens_clusters_after_features

    def tick(cursor):
        result = lens_clusters_after_features(dg.build_sensor_context(instance=instance, cursor=cursor))
        return (result.run_requests if isinstance(result, dg.SensorResult) else []), getattr(result, "cursor", cursor)

    def features(region: str) -> None:  # a materialisation event as the ingest run records it
        instance.report_runless_asset_event(dg.AssetMaterialization("lens_group_features", partition=f"{DAY}|{region}"))

    instance.add_dynamic_partitions("lens_regions", ["chicago", "ottawa"])
    features("chicago")
    requests, cursor = tick(None)
    assert requests == [] and cursor is not None  # the first tick starts from now

    features("ottawa")
    requests, cursor = tick(cursor)
    assert requests == []  # no GMM yet: the retrain sensor will assign every partition

    instance.report_runless_asset_event(dg.AssetMaterialization("lens_gmm", metadata={"gmm_version": "v1"}))
    features("chicago")  # a changed hour file re-ran chicago's ingestion
    requests, cursor = tick(cursor)
    assert [(r.partition_key, r.asset_selection) for r in requests] == [(f"{DAY}|chicago", [dg.AssetKey("lens_clusters")])]
    assert tick(cursor)[0] == []
