"""The LENS landing sensor: new regions become partitions, changed days become runs, once; and
lens_clusters following lens_gmm and lens_group_features by its automation condition."""

from __future__ import annotations

import os
import shutil

import dagster as dg
import pytest

from netassets.defs.lens.automation import lens_landing_sensor
from netassets.lens.sample import write_lens
from netassets.pipelines import pipeline
from netassets_tests.lens.conftest import DAY

LENS = pipeline("lens")


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

    LENS.register(instance, ["chicago"])
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

    LENS.register(instance, ["chicago"])
    job = defs.resolve_job_def("lens_ingest_job")  # the sensor's and the daily schedule's target
    result = job.execute_in_process(partition_key=f"{DAY}|chicago", instance=instance, run_config=LOW_RATE_CONFIG)
    assert result.success
    made = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert made == {"lens_raw_irtt", "lens_clean_groups", "lens_group_features"}
    checked = {event.asset_check_evaluation_data.asset_check_key.asset_key.to_user_string()
               for event in result.all_events if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    assert {"lens_raw_irtt", "lens_clean_groups", "lens_group_features"} <= checked
    assert warehouse.query("SELECT count(*) FROM lens_group_features").item() > 0


def test_a_gmm_refit_reassigns_clusters_in_every_partition_with_features_and_new_features_their_own(instance):
    """What the two follow-up sensors requested, now lens_clusters' automation condition
    (core.automation.follow_upstream) evaluated as the netassets_automation sensor does."""
    from netassets.definitions import defs

    clusters = dg.AssetKey("lens_clusters")
    cursor = None

    def evaluate() -> list[str]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                   asset_selection=dg.AssetSelection.assets(clusters))
        cursor = result.cursor
        return sorted(str(key) for key in result.get_requested_partitions(clusters))

    def features(region: str) -> None:  # a materialisation event as the ingest run records it
        instance.report_runless_asset_event(dg.AssetMaterialization("lens_group_features", partition=f"{DAY}|{region}"))

    def retrain(version: str) -> None:
        instance.report_runless_asset_event(dg.AssetMaterialization("lens_gmm", metadata={"gmm_version": version}))

    LENS.register(instance, ["chicago", "ottawa", "vancouver"])  # vancouver: no features, never clustered
    keys = [f"{DAY}|chicago", f"{DAY}|ottawa"]
    assert evaluate() == []  # nothing materialised: nothing to do
    features("chicago")
    features("ottawa")
    assert evaluate() == []  # no GMM yet: nothing to assign with
    assert evaluate() == []

    retrain("v1")
    assert evaluate() == keys  # every partition with features, once
    assert evaluate() == []  # the same GMM materialisation: nothing new

    retrain("v2")  # the monthly retrain
    assert evaluate() == keys
    # A tick between (Dagster marks a partition handled on the tick after its request, so an
    # update seen on that very tick is folded into the request just made).
    assert evaluate() == []
    retrain("v1")  # a refit back to the first model: partitions hold v2's ids, so they re-run too
    assert evaluate() == keys
    assert evaluate() == []

    features("chicago")  # a changed hour file re-ran chicago's ingestion
    assert evaluate() == [f"{DAY}|chicago"]
    assert evaluate() == []


def test_a_sensor_started_after_ingestion_requests_nothing_for_unchanged_files(low_rate_root, warehouse, instance,
                                                                                monkeypatch):
    """lens_raw_irtt records the fingerprint of the hour files it read: a first tick (empty cursor)
    over a root already ingested has nothing to ask for."""
    from netassets_tests.lens.conftest import LOW_RATE_CONFIG, REGIONS, materialize_lens

    monkeypatch.setenv("NETASSETS_LANDING_SETTLE_SECONDS", "0")
    for region in REGIONS:
        assert materialize_lens(warehouse, instance, f"{DAY.isoformat()}|{region}",
                                run_config=LOW_RATE_CONFIG).success
    first, context = tick(instance, None)
    assert isinstance(first, dg.SkipReason), first
    assert context.cursor in (None, "{}")


def test_the_generator_never_overwrites_landed_hour_files(tmp_path):
    write_lens(tmp_path, ["chicago"], DAY, days=1, seed=1, hours=1, rate_hz=10)
    landed = next(tmp_path.rglob("irtt-*.csv")).read_bytes()
    with pytest.raises(FileExistsError, match="landing files are never overwritten"):
        write_lens(tmp_path, ["chicago"], DAY, days=1, seed=7, hours=1, rate_hz=10)
    assert next(tmp_path.rglob("irtt-*.csv")).read_bytes() == landed
