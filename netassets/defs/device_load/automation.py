"""Device-load sensor and schedules: landing files -> ingestion, daily ingestion, monthly retraining.

Landing layout: ``$NETASSETS_HOME/landing/device_load/*.csv`` (multi-day device_data files;
``NETASSETS_DEVICE_LOAD_ROOT`` moves it). The sensor maps each file to every (day, region) its
rows fall in (region by the default hostname rule) and requests those partitions when a file
appears or changes.
"""

from netassets.core.automation import daily_ingestion_schedule, landing_sensor, monthly_retrain_schedule
from netassets.core.settings import landing_dir
from netassets.defs.device_load.assets import (
    device_load_anomalies, device_load_features, device_load_model, device_load_raw, device_load_windows,
)
from netassets.defs.device_load.pipeline import PIPELINE

# Ingestion runs load, featurise and score a partition; scoring needs a production model and says so if none.
INGEST = [device_load_raw, device_load_features, device_load_anomalies]
RETRAIN = [device_load_windows, device_load_model]

device_load_landing_sensor = landing_sensor(
    name="device_load_landing_sensor", target=INGEST, dynamic=PIPELINE.dynamic,
    fingerprint_asset="device_load_raw",
    scan=PIPELINE.landing_scan, root=lambda: landing_dir(PIPELINE.name),
    description="New or changed device_data CSVs in landing/device_load (quiet for the settle interval) -> their "
                "(day, region) partitions: raw, features, anomalies.",
)

device_load_daily_ingestion_schedule = daily_ingestion_schedule(
    name="device_load_daily_ingestion_schedule", target=INGEST, dynamic=PIPELINE.dynamic,
    description="Yesterday x every known region: raw, features, anomalies.",
)

device_load_monthly_retrain_schedule = monthly_retrain_schedule(
    name="device_load_monthly_retrain_schedule", target=RETRAIN,
    description="Rebuild the scaled windows from all features and retrain the Embed-LSTM.",
)
