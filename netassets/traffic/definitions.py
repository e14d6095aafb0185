"""Traffic pipeline: flow files -> traffic_flows (DuckDB) -> traffic_lstm, with its sensor and schedules."""

import dagster as dg

from netassets.core.automation import daily_ingestion_schedule, landing_sensor, monthly_retrain_schedule
from netassets.core.settings import landing_dir
from netassets.traffic.assets import traffic_flows, traffic_lstm
from netassets.traffic.checks import traffic_flows_valid
from netassets.traffic.readers import scan_landing

traffic_landing_sensor = landing_sensor(
    name="traffic_landing_sensor",
    target=[traffic_flows],
    dynamic_partitions_name="traffic_sites",
    scan=scan_landing,
    root=lambda: landing_dir("traffic"),  # links leading outside the landing root are refused, named in the log
    description="New or changed files in landing/traffic/<site>/<YYYY-MM-DD>/ -> traffic_flows for that day and site.",
)

traffic_daily_ingestion = daily_ingestion_schedule(
    name="traffic_daily_ingestion",
    target=[traffic_flows],
    dynamic_partitions_name="traffic_sites",
    description="Yesterday's traffic_flows for every known capture site.",
)

traffic_monthly_retrain = monthly_retrain_schedule(
    name="traffic_monthly_retrain",
    target=[traffic_lstm],
    description="Retrain the next-packet LSTM on every indexed flow.",
)

defs = dg.Definitions(
    assets=[traffic_flows, traffic_lstm],
    asset_checks=[traffic_flows_valid],
    sensors=[traffic_landing_sensor],
    schedules=[traffic_daily_ingestion, traffic_monthly_retrain],
)
