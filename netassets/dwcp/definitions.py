"""The DWCP pipeline's Definitions: assets, checks, landing sensor, ingestion and retrain schedules."""

import dagster as dg

from netassets.core.automation import daily_ingestion_schedule, landing_sensor, monthly_retrain_schedule
from netassets.dwcp.assets import (
    dwcp_bandwidth_lstm, dwcp_onnx, dwcp_onnx_production, dwcp_raw, dwcp_report, dwcp_windows,
)
from netassets.dwcp.checks import checks
from netassets.core.settings import landing_dir
from netassets.dwcp.schema import DYNAMIC_PARTITIONS, PIPELINE, scan_landing

model_assets = [dwcp_windows, dwcp_bandwidth_lstm, dwcp_report, dwcp_onnx, dwcp_onnx_production]

dwcp_landing_sensor = landing_sensor(
    name="dwcp_landing_sensor",
    target=[dwcp_raw],
    dynamic_partitions_name=DYNAMIC_PARTITIONS,
    scan=scan_landing,
    root=lambda: landing_dir(PIPELINE),
    description="New or changed <region>/<day>.csv files in the DWCP landing folder (quiet for the settle "
                "interval) -> dwcp_raw runs.",
)

dwcp_daily_ingestion = daily_ingestion_schedule(
    name="dwcp_daily_ingestion",
    target=[dwcp_raw],
    dynamic_partitions_name=DYNAMIC_PARTITIONS,
    description="Yesterday's dwcp_raw partition for every known region.",
)

dwcp_monthly_retrain = monthly_retrain_schedule(
    name="dwcp_monthly_retrain",
    target=model_assets,
    description="Rebuild windows, retrain BandwidthLSTM, report, export and (if every check passes) promote the ONNX.",
)

defs = dg.Definitions(
    assets=[dwcp_raw, *model_assets],
    asset_checks=checks,
    sensors=[dwcp_landing_sensor],
    schedules=[dwcp_daily_ingestion, dwcp_monthly_retrain],
)
