"""Device-load definitions: assets, GX checks, the landing sensor, daily ingestion and monthly retraining.

Landing layout: ``$NETASSETS_HOME/landing/device_load/*.csv`` (multi-day device_data files).
The sensor maps each file to every (day, region) its rows fall in (region by the default
hostname rule) and requests those partitions when a file appears or changes.
"""

import dagster as dg

from netassets.core.automation import daily_ingestion_schedule, landing_sensor, monthly_retrain_schedule
from netassets.device_load.assets import (
    device_load_anomalies, device_load_features, device_load_model, device_load_raw, device_load_windows,
)
from netassets.device_load.checks import device_load_checks
from netassets.core.settings import landing_dir
from netassets.device_load.landing import PIPELINE, scan_partitions
from netassets.device_load.partitions import device_load_regions_name

# Ingestion runs load, featurise and score a partition; scoring needs a trained model and says so if none.
ingest = [device_load_raw, device_load_features, device_load_anomalies]

defs = dg.Definitions(
    assets=[device_load_raw, device_load_features, device_load_windows, device_load_model, device_load_anomalies],
    asset_checks=device_load_checks,
    sensors=[landing_sensor(
        name="device_load_landing_sensor", target=ingest, dynamic_partitions_name=device_load_regions_name,
        scan=scan_partitions, root=lambda: landing_dir(PIPELINE),
        description="New or changed device_data CSVs in landing/device_load (quiet for the settle interval) -> their "
                    "(day, region) partitions.",
    )],
    schedules=[
        daily_ingestion_schedule(
            name="device_load_daily_ingestion", target=ingest, dynamic_partitions_name=device_load_regions_name,
            description="Yesterday x every known region: raw, features, anomalies.",
        ),
        monthly_retrain_schedule(
            name="device_load_monthly_retrain", target=[device_load_windows, device_load_model],
            description="Rebuild the scaled windows from all features and retrain the Embed-LSTM.",
        ),
    ],
)
