"""LENS jobs, sensors and schedules. lens_clusters follows lens_gmm and lens_group_features by its
automation condition (``core.automation.follow_upstream``), evaluated by ``netassets_automation``."""


import dagster as dg

from netassets.core.automation import daily_ingestion_schedule, landing_sensor, monthly_retrain_schedule
from netassets.core.settings import landing_dir
from netassets.defs.lens.pipeline import PIPELINE
from netassets.lens.raw import scan_lens_root

lens_ingest_job = dg.define_asset_job(
    "lens_ingest_job",
    selection=dg.AssetSelection.assets("lens_raw_irtt", "lens_clean_groups", "lens_group_features"),
    description="Everything per partition that needs no trained model: raw rows, clean groups, group features "
                "(lens_clusters waits for a lens_gmm and follows by itself).",
)

lens_clusters_job = dg.define_asset_job(
    "lens_clusters_job",
    selection=dg.AssetSelection.assets("lens_group_features", "lens_clusters"),
    description="Per partition: group features and their cluster assignment by the current GMM.",
)

lens_landing_sensor = landing_sensor(
    name="lens_landing_sensor",
    target=lens_ingest_job,
    dynamic=PIPELINE.dynamic,
    scan=scan_lens_root,
    root=lambda: landing_dir("lens"),
    fingerprint_asset="lens_raw_irtt",
    description="Watches the LENS root; registers new regions and runs each day x region whose hour files changed "
                "and have been quiet for the settle interval.",
)

lens_daily_ingestion_schedule = daily_ingestion_schedule(
    name="lens_daily_ingestion_schedule",
    target=lens_ingest_job,
    dynamic=PIPELINE.dynamic,
    description="Yesterday x every known region, for hour files that landed without the sensor running.",
)

lens_monthly_retrain_schedule = monthly_retrain_schedule(
    name="lens_monthly_retrain_schedule",
    target=dg.AssetSelection.assets("lens_gmm", "lens_patchtst", "lens_patchtst_production"),
    description="Refit the global GMM, retrain PatchTST on its clusters, promote it if it beats its strongest "
                "baseline; lens_clusters then re-assigns every partition by its automation condition.",
)
