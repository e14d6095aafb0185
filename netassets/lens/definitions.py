import dagster as dg

from netassets.core.automation import materialization_sensor, monthly_retrain_schedule
from netassets.lens.assets import lens_ingest
from netassets.lens.checks import lens_clean_groups_gx, lens_raw_irtt_gx
from netassets.lens.model_assets import (
    lens_clusters,
    lens_gmm,
    lens_group_features,
    lens_patchtst,
    lens_patchtst_production,
)
from netassets.lens.model_checks import lens_clusters_gx, lens_group_features_gx, lens_patchtst_beats_strongest_baseline
from netassets.lens.sensors import lens_daily_schedule, lens_ingest_job, lens_landing_sensor

# Per partition: features and cluster assignment. The two sensors below keep lens_clusters in step:
# a partition's after its features are re-made, every partition's after lens_gmm changes.
lens_clusters_job = dg.define_asset_job(
    "lens_clusters_job", selection=dg.AssetSelection.assets(lens_group_features, lens_clusters)
)



@dg.asset_sensor(asset_key=lens_gmm.key, job=lens_clusters_job, default_status=dg.DefaultSensorStatus.STOPPED,
                 description="After each lens_gmm materialisation, re-assigns lens_clusters in every partition that "
                             "has group features: cluster ids from an older GMM would be stale.")
def lens_clusters_after_retrain(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    partitions = context.instance.get_materialized_partitions(lens_group_features.key)
    if not partitions:
        return dg.SkipReason("lens_gmm changed, but no partition has lens_group_features yet")
    # Run keys name the materialisation (not the model's content hash: a later refit back to an
    # earlier model must re-assign too), so a repeated tick never re-runs a partition.
    materialised = f"{asset_event.run_id or 'runless'}@{asset_event.timestamp}"
    return [
        dg.RunRequest(run_key=f"gmm-{materialised}|{key}", partition_key=key, asset_selection=[lens_clusters.key])
        for key in sorted(partitions)
    ]


def _clusters_for_new_features(context: dg.SensorEvaluationContext, records) -> list[dg.RunRequest]:
    if context.instance.get_latest_materialization_event(lens_gmm.key) is None:
        return []  # no GMM yet: lens_clusters_after_retrain assigns every partition once there is one
    return [
        dg.RunRequest(run_key=f"clusters {r.partition_key} after #{r.storage_id}", partition_key=r.partition_key,
                      asset_selection=[lens_clusters.key])
        for r in records
    ]


lens_clusters_after_features = materialization_sensor(
    name="lens_clusters_after_features",
    watched=lens_group_features.key,
    job=lens_clusters_job,
    requests=_clusters_for_new_features,
    description="A partition's group features re-made (new or changed hour files) -> re-assign its lens_clusters "
                "with the current GMM, so the two tables never disagree on groups.",
)


lens_models_retrain = monthly_retrain_schedule(
    name="lens_monthly_retrain",
    target=dg.AssetSelection.assets(lens_gmm, lens_patchtst, lens_patchtst_production),
    description="Refit the global GMM, retrain PatchTST on its clusters, promote it if it beats its strongest baseline.",
)

defs = dg.Definitions(
    assets=[lens_ingest, lens_group_features, lens_gmm, lens_clusters, lens_patchtst,
            lens_patchtst_production],
    asset_checks=[lens_raw_irtt_gx, lens_clean_groups_gx, lens_group_features_gx, lens_clusters_gx,
                  lens_patchtst_beats_strongest_baseline],
    jobs=[lens_ingest_job, lens_clusters_job],
    sensors=[lens_landing_sensor, lens_clusters_after_retrain, lens_clusters_after_features],
    schedules=[lens_daily_schedule, lens_models_retrain],
)
