import dagster as dg

from netassets.core.automation import monthly_retrain_schedule
from netassets.lens.assets import lens_clean_groups, lens_raw_irtt
from netassets.lens.checks import lens_clean_groups_gx, lens_raw_irtt_gx
from netassets.lens.model_assets import (
    lens_clusters,
    lens_gmm,
    lens_group_features,
    lens_patchtst,
    lens_patchtst_production,
)
from netassets.lens.model_checks import lens_clusters_gx, lens_group_features_gx, lens_patchtst_beats_majority
from netassets.lens.sensors import lens_daily_schedule, lens_ingest_job, lens_landing_sensor

# Per partition: features and cluster assignment (run after ingestion, or backfilled after a GMM retrain).
lens_clusters_job = dg.define_asset_job(
    "lens_clusters_job", selection=dg.AssetSelection.assets(lens_group_features, lens_clusters)
)

lens_models_retrain = monthly_retrain_schedule(
    name="lens_monthly_retrain",
    target=dg.AssetSelection.assets(lens_gmm, lens_patchtst, lens_patchtst_production),
    description="Refit the global GMM, retrain PatchTST on its clusters, promote it if it beats the majority baseline.",
)

defs = dg.Definitions(
    assets=[lens_raw_irtt, lens_clean_groups, lens_group_features, lens_gmm, lens_clusters, lens_patchtst,
            lens_patchtst_production],
    asset_checks=[lens_raw_irtt_gx, lens_clean_groups_gx, lens_group_features_gx, lens_clusters_gx,
                  lens_patchtst_beats_majority],
    jobs=[lens_ingest_job, lens_clusters_job],
    sensors=[lens_landing_sensor],
    schedules=[lens_daily_schedule, lens_models_retrain],
)
