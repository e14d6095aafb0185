"""Device-load assets: landing CSVs -> raw -> features -> scaled windows -> Embed-LSTM -> anomalies.

The model asset trains a candidate into its own run folder (``runs/<run id>/``) and copies it
over the live model (``model.pt``, the file detection loads) only when it beats its strongest
simple baseline on the test split; otherwise the run fails with the reason and the live model
stays as it was.
"""


import datetime as dt
import json
import re
from pathlib import Path
from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field, field_validator

from netassets.core.evaluation import Evaluation, refuse_unless_promotable, split_of, time_cutoffs
from netassets.core.files import copy_file
from netassets.core.partitions import context_partition
from netassets.core.plots import figure_metadata, table_markdown
from netassets.core.settings import artifacts_dir, landing_dir
from netassets.core.sql import load_sql
from netassets.core.torchrun import launch_torchrun
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.device_load.features import build_windows, fit_scalers, infer_step_seconds
from netassets.device_load.landing import DEFAULT_REGION_PATTERN, PIPELINE, landing_files, read_landing
from netassets.device_load.likelihood import LikelihoodConfig
from netassets.device_load.partitions import REGION, device_load_partitions

GROUP = "device_load"


def model_path():
    return artifacts_dir(PIPELINE) / "model.pt"


class RawConfig(dg.Config):
    region_pattern: str = Field(default=DEFAULT_REGION_PATTERN,
                                description="regular expression with one capture group: the region in the hostname")

    @field_validator("region_pattern")
    @classmethod
    def _one_group(cls, value: str) -> str:
        try:
            groups = re.compile(value).groups
        except re.error as exc:
            raise ValueError(f"region_pattern {value!r} is not a regular expression: {exc}") from exc
        if groups != 1:
            raise ValueError(f"region_pattern needs exactly one capture group, {value!r} has {groups}")
        return value


@dg.asset(group_name=GROUP, partitions_def=device_load_partitions, pool=POOL, kinds={"duckdb", "csv"})
def device_load_raw(context: dg.AssetExecutionContext, config: RawConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """device_data rows of one day and region, validated, from every CSV in the landing folder."""
    partition = context_partition(context, REGION)
    files = landing_files()
    rows = read_landing(files, config.region_pattern, root=landing_dir(PIPELINE)).filter(
        (pl.col("day") == partition.day) & (pl.col("region") == partition.other)
    )
    count = warehouse.replace_partition("device_load_raw", {"day": partition.day, "region": partition.other}, data=rows)
    return dg.MaterializeResult(metadata={
        "rows": count,
        "routers": rows["router"].n_unique(),
        "source_files": ", ".join(sorted(rows["source_file"].unique().to_list())),
        "files_in_landing": len(files),
    })


@dg.asset(group_name=GROUP, partitions_def=device_load_partitions, pool=POOL, deps=[device_load_raw], kinds={"duckdb"})
def device_load_features(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """The seed's features per router (|max-mean|, ratio, deltas, rolling-4 z-scores), SQL in dbt_like_sql."""
    partition = context_partition(context, REGION)
    count = warehouse.replace_partition(
        "device_load_features", {"day": partition.day, "region": partition.other},
        select_sql=load_sql(PIPELINE, "device_load_features"), params={"day": partition.day, "region": partition.other},
    )
    return dg.MaterializeResult(metadata={"rows": count})


SPLIT_RULE = "by target time: first 80 % of distinct times train, next 10 % validate (early stopping), last 10 % test"


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
    if config.window < 2 or (config.step_minutes is not None and config.step_minutes < 1):
        raise ValueError(f"window must be >= 2 and step_minutes >= 1, got {config.window} and {config.step_minutes}")
    bounds = [dt.date.fromisoformat(d) if d else None for d in (config.first_day, config.last_day)]
    history = warehouse.query(load_sql(PIPELINE, "device_load_history"),
                              {"region": None, "first_day": bounds[0], "last_day": bounds[1]})
    if history.is_empty():
        raise ValueError("device_load_features is empty for the chosen days: materialise some partitions first")
    step_seconds = config.step_minutes * 60 if config.step_minutes is not None else infer_step_seconds(history)
    step_rule = "configured" if config.step_minutes is not None else "inferred from the data"
    times = history["timeslot"].to_numpy().astype("datetime64[us]")
    # The cut-offs come from the row times; targets follow their rows, so the split is by target time.
    train_end, val_end = time_cutoffs(times, train=0.8, val=0.1)
    scalers = fit_scalers(history, config.window, step_seconds, train_end, val_end)
    windows, skipped = build_windows(history, scalers)
    split = split_of(windows.target_time, train_end, val_end)
    counts = {name: int((split == i).sum()) for i, name in enumerate(("train", "val", "test"))}
    if not counts["train"] or not counts["val"]:
        raise ValueError(
            f"too little history for a train/validation split of {config.window}-step windows at a step of "
            f"{step_seconds} s ({step_rule}): {history.height} feature rows of {history['router'].n_unique()} routers "
            f"gave windows {counts}; a window needs {config.window + 1} consecutive rows {step_seconds} s apart"
            + ("" if config.step_minutes is None else "; is step_minutes right for this data?"))
    out = artifacts_dir(PIPELINE)
    windows.save(out / "windows.npz", split)
    scalers.save(out / "scalers.json")
    return dg.MaterializeResult(metadata={
        **{f"{name}_windows": n for name, n in counts.items()},
        "routers": len(scalers.routers),
        "step_seconds": step_seconds, "step_rule": step_rule,
        "train_end": str(train_end), "val_end": str(val_end),
        "skipped_routers": dg.MetadataValue.json(skipped),
        "windows_path": dg.MetadataValue.path(str(out / "windows.npz")),
        "scalers_path": dg.MetadataValue.path(str(out / "scalers.json")),
    })


class TrainingRunConfig(dg.Config):
    nproc: int = Field(default=1, ge=1, le=64, description="torchrun processes (gloo on CPU)")
    epochs: int = Field(default=30, ge=1, le=10_000, description="most epochs; early stopping may end sooner")
    batch_size: int = Field(default=64, ge=1, le=65_536, description="windows per optimiser step and process")
    lr: float = Field(default=1e-3, gt=0, le=1, allow_inf_nan=False, description="Adam learning rate")
    patience: int = Field(default=5, ge=1, description="epochs without a better validation loss before stopping")
    seed: int = Field(default=0, ge=0, description="random seed of the initialisation and batch order")


def promote(candidate: Path, evaluation: Evaluation, live: Path) -> Path:
    """Copy the candidate over the live model if it beats its strongest baseline on test; else dg.Failure."""
    refuse_unless_promotable(evaluation, candidate=dg.MetadataValue.path(str(candidate)),
                             live_model=dg.MetadataValue.path(str(live)))
    return copy_file(candidate, live)


@dg.asset(group_name=GROUP, deps=[device_load_windows], kinds={"pytorch"})
def device_load_model(context: dg.AssetExecutionContext, config: TrainingRunConfig) -> dg.MaterializeResult:
    """Embed-LSTM trained through torchrun; promoted to the live model only if it beats its baselines on test."""
    out = artifacts_dir(PIPELINE)
    candidate = out / "runs" / context.run_id / "model.pt"
    evaluation_path = candidate.with_name("evaluation.json")
    args = [f"--windows={out / 'windows.npz'}", f"--scalers={out / 'scalers.json'}", f"--out={candidate}",
            f"--evaluation={evaluation_path}", f"--split_rule={SPLIT_RULE}",
            f"--epochs={config.epochs}", f"--batch_size={config.batch_size}", f"--lr={config.lr}",
            f"--patience={config.patience}", f"--seed={config.seed}"]
    trained = launch_torchrun(context, "netassets.device_load.train", args, nproc=config.nproc).get_materialize_result()
    evaluation = Evaluation.from_dict(json.loads(evaluation_path.read_text()))
    live = promote(candidate, evaluation, model_path())
    return dg.MaterializeResult(metadata={**(trained.metadata or {}), **evaluation.metadata(),
                                          "model_path": dg.MetadataValue.path(str(live))})


class AnomaliesConfig(dg.Config):
    method: Literal["likelihood", "seed_dbscan"] = Field(
        default="likelihood", description="'likelihood': Numenta's anomaly likelihood on forecast errors (default); "
                                          "'seed_dbscan': the seed's DBSCAN on |prediction - actual|")
    # likelihood (see likelihood.py; Numenta's defaults, fixed a priori)
    short_window: int = Field(default=10, ge=1, description="likelihood: errors averaged into the recent mean")
    long_window: int = Field(default=500, ge=2, description="likelihood: earlier recent means forming the running distribution")
    min_history: int = Field(default=100, ge=2, description="likelihood: earlier errors needed before a point is scored")
    threshold: float = Field(default=1 - 1e-5, gt=0, lt=1, description="likelihood above which a point is flagged")
    refractory: int = Field(default=100, ge=0, description="points after a flag that are not flagged again")
    # seed_dbscan, with the seed's parameters
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


@dg.asset(group_name=GROUP, partitions_def=device_load_partitions, pool=POOL,
          deps=[device_load_features, device_load_model], kinds={"duckdb", "sklearn"})
def device_load_anomalies(context: dg.AssetExecutionContext, config: AnomaliesConfig,
                          warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Predictions, errors, anomaly likelihood and labels (-1 = anomaly) per router for one day and region."""
    # torch and sklearn are imported by this step only, not with the code location
    from netassets.device_load.detect import Detector, SeedDbscan, detect, router_figure

    partition = context_partition(context, REGION)
    detector = Detector.load(model_path())
    likelihood = LikelihoodConfig(config.short_window, config.long_window, config.min_history,
                                  config.threshold, config.refractory)
    # Context before the day: one window of inputs, plus the running error history of the likelihood.
    context_steps = detector.scalers.window + (likelihood.long_window if config.method == "likelihood" else 0)
    context_days = -(-context_steps * detector.scalers.step_seconds // 86400)  # ceil
    history = warehouse.query(load_sql(PIPELINE, "device_load_history"), {
        "region": partition.other, "first_day": partition.day - dt.timedelta(days=context_days), "last_day": partition.day})
    day_start = dt.datetime.combine(partition.day, dt.time())
    detection = detect(history, detector, (day_start, day_start + dt.timedelta(days=1)), config.method, likelihood,
                       SeedDbscan(config.eps, config.min_samples, config.reference, config.fallback_mean_error,
                                  config.eps_quantile))
    table, skipped = detection.table, detection.skipped
    for router, note in detection.notes.items():
        context.log.info("router %s: %s", router, note)
    for router, reason in skipped.items():
        context.log.warning("router %s not scored: %s", router, reason)
    count = warehouse.replace_partition("device_load_anomalies", {"day": partition.day, "region": partition.other},
                                        data=table, allow_empty=True)
    plots = {}
    plot_dir = artifacts_dir(PIPELINE) / "plots" / partition.day.isoformat() / partition.other
    for i, ((router,), rows) in enumerate(table.group_by("router", maintain_order=True)):
        figure = figure_metadata(router_figure(rows, router), save_to=plot_dir / f"router_{detector.scalers.router_id(router)}.png")
        if i < config.max_plots:
            plots[f"plot {router}"] = figure
    per_router = (table.group_by("router").agg(pl.len().alias("points"), pl.col("is_anomaly").sum().alias("anomalies"),
                                                pl.col("error_max").mean().alias("mean_error_max")).sort("router"))
    return dg.MaterializeResult(metadata={
        "rows": count,
        "anomalies": int(table["is_anomaly"].sum()) if count else 0,
        "anomaly_rate": float(table["is_anomaly"].mean()) if count else 0.0,
        "method": config.method,
        "skipped_routers": dg.MetadataValue.json(skipped),
        "router_notes": dg.MetadataValue.json(detection.notes),
        "per_router": table_markdown(per_router.to_dicts()),
        **plots,
    })
