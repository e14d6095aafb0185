"""Device-load assets: landing CSVs -> raw -> features -> scaled windows -> Embed-LSTM -> anomalies.

Dagster wiring only; the reading, SQL, windows, training and detection are in
``netassets/device_load/``. The model asset trains a candidate into its run folder
(``runs/<run id>/`` of the ``embed_lstm`` model store) and promotes it to production only
when it beats its strongest simple baseline on the test split; otherwise the run fails with
the reason (its ``beats_strongest_baseline`` check says so too) and production stays as it was.
"""

import datetime as dt
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from netassets.core.automation import landing_fingerprint_metadata
from netassets.core.partitions import context_partition
from netassets.core.metadata import shown
from netassets.core.plots import table_markdown
from netassets.core.settings import artifacts_dir
from netassets.core.torchrun import launch_torchrun
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.defs.device_load.pipeline import PIPELINE
from netassets.device_load import store as model_files
from netassets.device_load.config import TrainConfig
from netassets.device_load.features import SPLIT_RULE, features_sql, load_history, save_training_windows
from netassets.device_load.landing import DEFAULT_REGION_PATTERN, partition_rows, region_rule
from netassets.device_load.likelihood import LikelihoodConfig

GROUP = PIPELINE.name
BASELINE_CHECK = "beats_strongest_baseline"


class RawConfig(dg.Config):
    region_pattern: str = Field(default=DEFAULT_REGION_PATTERN,
                                description="regular expression with one capture group: the region in the hostname")

    @field_validator("region_pattern")
    @classmethod
    def _one_group(cls, value: str) -> str:
        region_rule(value)
        return value


@dg.asset(group_name=GROUP, partitions_def=PIPELINE.partitions, pool=POOL, kinds={"duckdb", "csv"})
def device_load_raw(context: dg.AssetExecutionContext, config: RawConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """device_data rows of one day and region, validated, from every CSV in the landing folder."""
    partition = context_partition(context, PIPELINE.dimension)
    rows, files, read_states = partition_rows(partition.day, partition.other, config.region_pattern)
    write = warehouse.replace_partition("device_load_raw", {"day": partition.day, "region": partition.other}, data=rows)
    return dg.MaterializeResult(metadata={
        **write.metadata,
        "routers": rows["router"].n_unique(),
        "source_files": ", ".join(sorted(rows["source_file"].unique().to_list())),
        "files_in_landing": len(files),
        **landing_fingerprint_metadata(read_states),
    })


@dg.asset(group_name=GROUP, partitions_def=PIPELINE.partitions, pool=POOL, deps=[device_load_raw], kinds={"duckdb"})
def device_load_features(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """The seed's features per router (|max-mean|, ratio, deltas, rolling-4 z-scores), SQL in dbt_like_sql."""
    partition = context_partition(context, PIPELINE.dimension)
    where = {"day": partition.day, "region": partition.other}
    write = warehouse.replace_partition("device_load_features", where, select_sql=features_sql(), params=where)
    return dg.MaterializeResult(metadata=write.metadata)


class WindowsConfig(dg.Config):
    window: int = Field(default=24, ge=2, le=10_000, description="steps per input window: 24 for the daily "
                        "seasonality the seed's notebook shows (its code used 6)")
    step_minutes: int | None = Field(default=None, ge=1, description="sampling step in minutes; unset: inferred "
                                     "(median gap within a router). Windows never span a gap")
    first_day: str | None = Field(default=None, description="first day of training history (ISO); unset: open")
    last_day: str | None = Field(default=None, description="last day of training history (ISO); unset: open")

    @field_validator("first_day", "last_day")
    @classmethod
    def _iso_day(cls, value: str | None) -> str | None:
        if value is not None:
            dt.date.fromisoformat(value)  # raises naming the value
        return value


@dg.asset(group_name=GROUP, deps=[device_load_features], kinds={"numpy"})
def device_load_windows(context: dg.AssetExecutionContext, config: WindowsConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Per-router winsorised, robust-scaled windows -> next (max, mean), split 80/10/10 by time."""
    bounds = [dt.date.fromisoformat(d) if d else None for d in (config.first_day, config.last_day)]
    history = load_history(warehouse, None, *bounds)
    windows_path, scalers_path = model_files.windows_path(), model_files.scalers_path()
    saved = save_training_windows(history, config.window, config.step_minutes, windows_path, scalers_path)
    return dg.MaterializeResult(metadata={
        **{f"{name}_windows": n for name, n in saved.counts.items()},
        "routers": saved.routers,
        "step_seconds": saved.step_seconds, "step_rule": saved.step_rule,
        "train_end": str(saved.train_end), "val_end": str(saved.val_end),
        "skipped_routers": dg.MetadataValue.json(saved.skipped),
        "windows_path": dg.MetadataValue.path(str(windows_path)),
        "scalers_path": dg.MetadataValue.path(str(scalers_path)),
    })


class TrainingRunConfig(TrainConfig, dg.Config):
    nproc: int = Field(default=1, ge=1, le=64, description="torchrun processes (gloo on CPU)")


@dg.asset(
    group_name=GROUP, deps=[device_load_windows], kinds={"pytorch", "safetensors"},
    check_specs=[dg.AssetCheckSpec(
        BASELINE_CHECK, asset="device_load_model", blocking=False,
        description="The trained Embed-LSTM's test MSE beats the strongest simple baseline (persistence, window "
                    "mean) on the same test windows (warning when it loses: production is then kept as it was).")],
)
def device_load_model(context: dg.AssetExecutionContext, config: TrainingRunConfig):
    """Embed-LSTM trained through torchrun; promoted to production only if it beats its baselines on test."""
    store = model_files.model_store()
    run_dir = store.run_dir(context.run_id)
    args = model_files.worker_args(TrainConfig.of(config), run_dir, SPLIT_RULE)
    trained = launch_torchrun(context, model_files.WORKER, args, nproc=config.nproc).get_materialize_result()
    evaluation = model_files.read_evaluation(run_dir)
    # The verdict shows on the asset page whether or not the promotion below refuses it.
    yield evaluation.check_result(BASELINE_CHECK)
    candidate = model_files.propose(store, context.run_id, evaluation)
    live = store.promote(version=candidate, run_dir=dg.MetadataValue.path(str(run_dir)))
    yield dg.MaterializeResult(metadata=shown({
        **(trained.metadata or {}), **evaluation.metadata(),
        "run_dir": dg.MetadataValue.path(str(run_dir)),
        "production_run": live.run_id,
        "model_path": dg.MetadataValue.path(str(live.path("weights"))),
    }))


class AnomaliesConfig(dg.Config):
    method: Literal["likelihood", "seed_dbscan"] = Field(
        default="likelihood", description="'likelihood': Numenta's anomaly likelihood on forecast errors (default); "
                                          "'seed_dbscan': the seed's DBSCAN on |prediction - actual|")
    short_window: int = Field(default=10, ge=1, description="likelihood: errors averaged into the recent mean "
                              "(Numenta's default, fixed a priori; see device_load/likelihood.py)")
    long_window: int = Field(default=500, ge=2, description="likelihood: earlier recent means forming the running distribution")
    min_history: int = Field(default=100, ge=2, description="likelihood: earlier errors needed before a point is scored")
    threshold: float = Field(default=1 - 1e-5, gt=0, lt=1, description="likelihood above which a point is flagged")
    refractory: int = Field(default=100, ge=0, description="points after a flag that are not flagged again")
    eps: float = Field(default=1.0, gt=0, allow_inf_nan=False,
                       description="seed_dbscan: radius on |prediction - actual| in robust-scaled units (seed: 1)")
    min_samples: int = Field(default=150, ge=1, description="seed_dbscan: neighbours of a dense point (seed: 150)")
    reference: Literal["validation", "partition"] = Field(
        default="validation", description="seed_dbscan: cluster with the router's held-out errors, or the partition alone (seed)")
    fallback_mean_error: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                              description="seed_dbscan: the seed's fallback (it used 4.0); unset: off")
    eps_quantile: float | None = Field(default=None, gt=0, lt=1, description="seed_dbscan: eps per router from this "
                                       "quantile of its held-out k-distances instead of `eps`, e.g. 0.99")
    max_plots: int = Field(default=12, ge=0, description="routers plotted inline in metadata (all are written to disk)")


@dg.asset(group_name=GROUP, partitions_def=PIPELINE.partitions, pool=POOL,
          deps=[device_load_features, device_load_model], kinds={"duckdb", "pytorch", "sklearn"})
def device_load_anomalies(context: dg.AssetExecutionContext, config: AnomaliesConfig,
                          warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Predictions, errors, anomaly likelihood and labels (-1 = anomaly) per router for one day and region,
    from the production Embed-LSTM."""
    # torch and sklearn are imported by this step only, not with the code location
    from netassets.device_load.detect import Detector, SeedDbscan, context_days, detect_day, per_router, router_plots

    partition = context_partition(context, PIPELINE.dimension)
    weights = model_files.live_weights()
    detector = Detector.load(weights)
    likelihood = LikelihoodConfig(config.short_window, config.long_window, config.min_history,
                                  config.threshold, config.refractory)
    history = load_history(warehouse, partition.other,
                           partition.day - dt.timedelta(days=context_days(detector, config.method, likelihood)),
                           partition.day)
    detection = detect_day(history, detector, partition.day, config.method, likelihood,
                           SeedDbscan(config.eps, config.min_samples, config.reference, config.fallback_mean_error,
                                      config.eps_quantile))
    table, skipped = detection.table, detection.skipped
    for router, note in detection.notes.items():
        context.log.info("router %s: %s", router, note)
    for router, reason in skipped.items():
        context.log.warning("router %s not scored: %s", router, reason)
    write = warehouse.replace_partition("device_load_anomalies", {"day": partition.day, "region": partition.other},
                                        data=table, allow_empty=True)
    plot_dir = artifacts_dir(PIPELINE.name) / "plots" / partition.day.isoformat() / partition.other
    plots = router_plots(table, detector, plot_dir, config.max_plots)
    return dg.MaterializeResult(metadata=shown({
        **write.metadata,
        "anomalies": int(table["is_anomaly"].sum()) if write.rows else 0,
        "anomaly_rate": float(table["is_anomaly"].mean()) if write.rows else 0.0,
        "method": config.method,
        "model_path": dg.MetadataValue.path(str(weights)),
        "skipped_routers": dg.MetadataValue.json(skipped),
        "router_notes": dg.MetadataValue.json(detection.notes),
        "per_router": table_markdown(per_router(table).to_dicts()),
        **plots,
    }))
