"""When traffic assets run: new landed files, yesterday's captures, the monthly retrain."""

from netassets.core.automation import daily_ingestion_schedule, landing_sensor, monthly_retrain_schedule
from netassets.core.settings import landing_dir
from netassets.defs.traffic.assets import traffic_flows, traffic_lstm
from netassets.defs.traffic.pipeline import PIPELINE
from netassets.traffic.readers import scan_landing

traffic_landing_sensor = landing_sensor(
    name="traffic_landing_sensor",
    target=[traffic_flows],
    dynamic=PIPELINE.dynamic,
    scan=scan_landing,
    fingerprint_asset="traffic_flows",
    root=lambda: landing_dir(PIPELINE.name),  # links leading outside the landing root are refused, named in the log
    description="New or changed files in landing/traffic/<site>/<YYYY-MM-DD>/ -> traffic_flows for that day and site.",
)

traffic_daily_ingestion_schedule = daily_ingestion_schedule(
    name="traffic_daily_ingestion_schedule",
    target=[traffic_flows],
    dynamic=PIPELINE.dynamic,
    description="Yesterday's traffic_flows for every known capture site.",
)

traffic_monthly_retrain_schedule = monthly_retrain_schedule(
    name="traffic_monthly_retrain_schedule",
    target=[traffic_lstm],
    description="Retrain the next-packet LSTM on every indexed flow (promoted only if it beats its baselines on test).",
)
