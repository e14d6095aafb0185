"""Every schedule of the code location, evaluated as the daemon would on a given tick."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from netassets.definitions import defs

REPO = defs.get_repository_def()
TICK = dt.datetime(2024, 3, 1, 3, 0, tzinfo=dt.timezone.utc)  # the 1st of a month, after both crons


def dynamic_dimensions() -> dict[str, str]:
    """{dynamic partitions name: dimension name} over every partitioned asset."""
    found = {}
    for assets_def in REPO.assets_defs_by_key.values():
        partitions = assets_def.partitions_def
        if isinstance(partitions, dg.MultiPartitionsDefinition):
            for dim in partitions.partitions_defs:
                if isinstance(dim.partitions_def, dg.DynamicPartitionsDefinition):
                    found[dim.partitions_def.name] = dim.name
    return found


def evaluate(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=TICK, repository_def=REPO)
    data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def test_every_pipeline_has_a_daily_ingestion_schedule():
    groups = {g for a in REPO.assets_defs_by_key.values() for g in a.group_names_by_key.values()}
    daily = {s.name.split("_daily")[0] for s in REPO.schedule_defs if "_daily_" in s.name}
    assert groups <= daily, f"pipelines without a daily ingestion schedule: {groups - daily}"


@pytest.mark.parametrize("schedule", [s for s in REPO.schedule_defs if "_daily_" in s.name], ids=lambda s: s.name)
def test_daily_ingestion_requests_yesterday_for_every_known_partition(schedule, instance):
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    assert evaluate(schedule, instance) == [], "nothing registered yet: nothing to run"
    for name in dynamic_dimensions():
        instance.add_dynamic_partitions(name, ["site-a", "site-b"])
    requests = evaluate(schedule, instance)
    assert sorted(r.partition_key for r in requests) == ["2024-02-29|site-a", "2024-02-29|site-b"]
    assert len({r.run_key for r in requests}) == len(requests)


@pytest.mark.parametrize("schedule", [s for s in REPO.schedule_defs if "_monthly_" in s.name], ids=lambda s: s.name)
def test_monthly_retraining_targets_model_assets_on_the_first(schedule, instance):
    assert schedule.cron_schedule == "0 3 1 * *" and schedule.execution_timezone == "UTC"
    requests = evaluate(schedule, instance)
    assert len(requests) == 1
    job = REPO.get_job(schedule.job_name)
    targeted = {node.name for node in job.graph.node_defs}
    assert targeted, "retraining job selects no asset"
    partitioned = [k for k in job.asset_layer.executable_asset_keys
                   if REPO.assets_defs_by_key[k].partitions_def is not None]
    assert not partitioned, f"monthly retraining should target whole-history model assets, not {partitioned}"


def test_model_assets_all_have_a_monthly_schedule():
    unpartitioned = {k.to_user_string() for k, a in REPO.assets_defs_by_key.items() if a.partitions_def is None}
    covered = set()
    for schedule in REPO.schedule_defs:
        if "_monthly_" in schedule.name:
            covered |= {k.to_user_string() for k in REPO.get_job(schedule.job_name).asset_layer.executable_asset_keys}
    assert unpartitioned <= covered, f"model assets without monthly retraining: {unpartitioned - covered}"
