import dagster as dg

from netassets.lens.assets import lens_clean_groups, lens_raw_irtt
from netassets.lens.checks import lens_clean_groups_gx, lens_raw_irtt_gx
from netassets.lens.sensors import lens_daily_schedule, lens_ingest_job, lens_landing_sensor

defs = dg.Definitions(
    assets=[lens_raw_irtt, lens_clean_groups],
    asset_checks=[lens_raw_irtt_gx, lens_clean_groups_gx],
    jobs=[lens_ingest_job],
    sensors=[lens_landing_sensor],
    schedules=[lens_daily_schedule],
)
