"""When DWCP assets run: new landed files, yesterday's files, the monthly retrain."""

from netassets.core.automation import daily_ingestion_schedule, landing_sensor, monthly_retrain_schedule
from netassets.core.settings import landing_dir
from netassets.defs.dwcp.assets import (
    dwcp_bandwidth_lstm, dwcp_onnx, dwcp_onnx_production, dwcp_raw, dwcp_report, dwcp_windows,
)
from netassets.defs.dwcp.pipeline import PIPELINE
from netassets.dwcp.schema import scan_landing

dwcp_landing_sensor = landing_sensor(
    name="dwcp_landing_sensor",
    target=[dwcp_raw],
    dynamic=PIPELINE.dynamic,
    scan=scan_landing,
    fingerprint_asset="dwcp_raw",
    root=lambda: landing_dir(PIPELINE.name),
    description="New or changed <region>/<day>.csv files in the DWCP landing folder (quiet for the settle "
                "interval) -> dwcp_raw runs.",
)

dwcp_daily_ingestion_schedule = daily_ingestion_schedule(
    name="dwcp_daily_ingestion_schedule",
    target=[dwcp_raw],
    dynamic=PIPELINE.dynamic,
    description="Yesterday's dwcp_raw partition for every known region.",
)

dwcp_monthly_retrain_schedule = monthly_retrain_schedule(
    name="dwcp_monthly_retrain_schedule",
    target=[dwcp_windows, dwcp_bandwidth_lstm, dwcp_report, dwcp_onnx, dwcp_onnx_production],
    description="Rebuild windows, retrain BandwidthLSTM, report, export and (if every check passes) promote the ONNX.",
)
