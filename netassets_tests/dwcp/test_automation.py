"""The landing sensor, the daily ingestion schedule and the monthly retrain schedule, on a real instance."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from netassets.core.warehouse import DuckDBWarehouse
from netassets.defs.dwcp import assets, automation, checks
from netassets.defs.dwcp.automation import (
    dwcp_daily_ingestion_schedule, dwcp_landing_sensor, dwcp_monthly_retrain_schedule,
)
from netassets.defs.dwcp.pipeline import PIPELINE

from .conftest import DAYS, REGION

# The top level provides the shared warehouse; here it is provided the same way.
defs = dg.Definitions(
    assets=[v for v in vars(assets).values() if isinstance(v, dg.AssetsDefinition)],
    asset_checks=[v for v in vars(checks).values() if isinstance(v, dg.AssetChecksDefinition)],
    sensors=[automation.dwcp_landing_sensor],
    schedules=[automation.dwcp_daily_ingestion_schedule, automation.dwcp_monthly_retrain_schedule],
    resources={"warehouse": DuckDBWarehouse()},
)


def _tick(instance, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as context:
        return dwcp_landing_sensor(context), context.cursor


def test_landing_sensor_requests_new_and_changed_partitions_once(landing, instance):
    result, _ = _tick(instance)
    assert sorted(r.partition_key for r in result.run_requests) == [f"{d}|{REGION}" for d in DAYS]
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [[REGION]]

    # Nothing changed since the stored cursor: skip.
    skipped, _ = _tick(instance, result.cursor)
    assert isinstance(skipped, dg.SkipReason)

    # A re-delivered file (new size and mtime) is ingested again, alone.
    path = landing / REGION / f"{DAYS[1]}.csv"
    path.write_text(path.read_text() + path.read_text().splitlines()[1] + "\n")
    # An mtime in the past: one in the future would read as a file still being written.
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 10**9))
    again, _ = _tick(instance, result.cursor)
    assert [r.partition_key for r in again.run_requests] == [f"{DAYS[1]}|{REGION}"]


def test_a_first_tick_after_materialising_requests_only_changed_files(landing, instance):
    """dwcp_raw records the fingerprint of the file it read: a sensor started later (empty cursor)
    does not ask again for what was materialised from the files still on disk."""
    instance.add_dynamic_partitions(PIPELINE.dynamic.name, [REGION])
    for day in DAYS:
        assert dg.materialize([assets.dwcp_raw], instance=instance, partition_key=f"{day}|{REGION}",
                              resources={"warehouse": DuckDBWarehouse()}).success
    first, cursor = _tick(instance)
    assert isinstance(first, dg.SkipReason) and cursor in (None, "{}")
    path = landing / REGION / f"{DAYS[0]}.csv"
    path.write_text(path.read_text() + path.read_text().splitlines()[1] + "\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 10**9))
    again, _ = _tick(instance)
    assert [r.partition_key for r in again.run_requests] == [f"{DAYS[0]}|{REGION}"]


def test_daily_schedule_asks_for_yesterday_in_every_region(instance):
    when = dt.datetime(2024, 1, 7, 2, tzinfo=dt.timezone.utc)
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                   repository_def=defs.get_repository_def()) as context:
        assert isinstance(dwcp_daily_ingestion_schedule.evaluate_tick(context).skip_message, str)
    instance.add_dynamic_partitions(PIPELINE.dynamic.name, ["eu-west-1", REGION])
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                   repository_def=defs.get_repository_def()) as context:
        requests = dwcp_daily_ingestion_schedule.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == ["2024-01-06|eu-west-1", f"2024-01-06|{REGION}"]


def test_retrain_schedule_targets_the_model_assets_monthly():
    assert dwcp_monthly_retrain_schedule.cron_schedule == "0 3 1 * *"
    job = defs.resolve_job_def(dwcp_monthly_retrain_schedule.job_name)
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= {
        "dwcp_windows", "dwcp_bandwidth_lstm", "dwcp_report", "dwcp_onnx", "dwcp_onnx_production"}
