"""DWCP assets: landing CSV -> dwcp_raw (day x region) -> dwcp_windows -> dwcp_bandwidth_lstm
-> dwcp_report -> dwcp_onnx -> dwcp_onnx_production.

The steps that need torch import it in their bodies: the code location loads this module.
"""

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field, field_validator, model_validator

from netassets.core.files import changed_since, copy_file, file_states, inside_root, write_json
from netassets.core.partitions import context_partition, day_by
from netassets.core.plots import figure_metadata, table_markdown
from netassets.core.settings import landing_dir, safe_name
from netassets.core.sql import load_sql
from netassets.core.torchrun import launch_torchrun
from netassets.core.warehouse import POOL, DuckDBWarehouse
from netassets.dwcp import artifacts, onnx_export, report
from netassets.dwcp.artifacts import CHECKPOINT, HISTORY, PREDICTIONS
from netassets.dwcp.gates import candidate_problems
from netassets.dwcp.sample import MINUTES_PER_DAY, expected_targets, is_generated
from netassets.dwcp.schema import (
    DIMENSION, DYNAMIC_PARTITIONS, FEATURES, LINK, PIPELINE, STEP_SECONDS, TARGETS, RawFileError, landing_file,
    read_raw_file,
)
from netassets.dwcp.windows import CHRONOLOGICAL_RULE, SPLITS, Windows, build_windows, chronological_split

PARTITIONS = day_by(DIMENSION, DYNAMIC_PARTITIONS)
GROUP = PIPELINE


@dg.asset(partitions_def=PARTITIONS, pool=POOL, group_name=GROUP, kinds={"duckdb"})
def dwcp_raw(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """One region's day of DWCP link telemetry (the guide's 20 columns), validated, in DuckDB."""
    part = context_partition(context, DIMENSION)
    path = landing_file(part.other, part.day)
    if path.exists() and not inside_root(path, landing_dir(PIPELINE)):
        raise RawFileError(f"{path}: leads outside the landing folder {landing_dir(PIPELINE)} (a link?); refused without reading it")
    before = file_states([path]) if path.exists() else {}
    frame, ignored = read_raw_file(path, part.other, part.day)
    if changed_since(before):  # a copy still in progress: what was read may be a prefix
        raise RawFileError(f"{path}: changed while it was read (still being written?); nothing stored, retry once it is complete")
    rows = warehouse.replace_partition(
        "dwcp_raw", {"day": part.day, "region": part.other},
        data=frame.with_columns(day=pl.lit(part.day), source_file=pl.lit(str(path))),
    )
    links = frame.select("node_id", "peer_id").unique().height
    return dg.MaterializeResult(metadata={
        "rows": rows, "links": links, "source_file": dg.MetadataValue.path(str(path)),
        "ignored_columns": ", ".join(ignored) or "none",
        "missing_rows": links * 24 * 3600 // STEP_SECONDS - rows,  # gaps in the series, skipped by windows
    })


class WindowsConfig(dg.Config):
    """Validated when Dagster builds the step's config, before the step body reads the warehouse."""

    window: int = Field(default=20, ge=2, le=MINUTES_PER_DAY,
                        description="the guide's --window-size: minutes per window, 2 to 1440")
    horizon_minutes: int = Field(default=15, ge=1, le=MINUTES_PER_DAY,
                                 description="minutes ahead, 1 to 1440 (the guide's promise: 15; 1 reproduces the seed's code)")
    regions: list[str] = Field(default=[], description="regions to read; empty: every region in dwcp_raw")
    first_day: str = Field(default="", description="YYYY-MM-DD; empty: from the first day loaded")
    last_day: str = Field(default="", description="YYYY-MM-DD; empty: to the last day loaded")
    throughput_only: bool = Field(default=False, description="one feature, one target (the mode evaluated on real traces)")

    @field_validator("first_day", "last_day")
    @classmethod
    def _a_day(cls, value: str, info) -> str:
        _optional_day(value, info.field_name)
        return value

    @field_validator("regions")
    @classmethod
    def _region_names(cls, value: list[str]) -> list[str]:
        for region in value:
            safe_name(region, DIMENSION)
        return value

    @model_validator(mode="after")
    def _days_in_order(self) -> "WindowsConfig":
        if self.first_day and self.last_day and self.first_day > self.last_day:
            raise ValueError(f"first_day={self.first_day} is after last_day={self.last_day}")
        return self


def _optional_day(value: str, field: str) -> str | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"config {field}={value!r} is not a YYYY-MM-DD day") from None


@dg.asset(deps=[dwcp_raw], group_name=GROUP, kinds={"numpy"})
def dwcp_windows(context: dg.AssetExecutionContext, config: WindowsConfig,
                 warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    """Windows of `window` minutes per link, target `horizon_minutes` later; never across a gap or
    a link; split 70/15/15 by target time. Holds the generator's noise-free oracle only when every
    partition read is generator output (its landing file has an unchanged generator sidecar)."""
    if config.horizon_minutes * 60 % STEP_SECONDS:
        raise ValueError(f"horizon_minutes={config.horizon_minutes} is not a whole number of {STEP_SECONDS}s steps")
    params = {"regions": [safe_name(r, DIMENSION) for r in config.regions],
              "first_day": _optional_day(config.first_day, "first_day"),
              "last_day": _optional_day(config.last_day, "last_day")}
    frame = warehouse.query(load_sql(PIPELINE, "dwcp_series"), params)
    features, targets = (["throughput_mbps"], ["throughput_mbps"]) if config.throughput_only else (FEATURES, TARGETS)
    windows = build_windows(frame, link_columns=LINK, time_column="timestamp", features=features, targets=targets,
                            window=config.window, horizon=config.horizon_minutes * 60 // STEP_SECONDS,
                            step=STEP_SECONDS)
    windows.split = chronological_split(windows.target_time)
    days_regions = frame.select("day", "region").unique().sort("day", "region").rows()
    # The oracle knows the generator's formulas: it is a ceiling on generated data, noise elsewhere.
    generated = all(is_generated(landing_file(region, day)) for day, region in days_regions)
    if generated:
        windows.extra["oracle"] = expected_targets(windows.target_time)[:, [TARGETS.index(t) for t in targets]]
    windows.stats["partitions"] = [f"{day.isoformat()}|{region}" for day, region in days_regions]
    path = windows.save(artifacts.windows_path())
    counts = {s: int((windows.split == i).sum()) for i, s in enumerate(SPLITS)}
    stats = {k: v for k, v in windows.stats.items() if k not in ("partitions", "links_without_windows")}
    short = windows.stats["links_without_windows"]
    if short:
        context.log.warning(f"{len(short)} link(s) shorter than one window ({config.window} rows + horizon "
                            f"{windows.horizon}), left out: {', '.join(short)}")
    return dg.MaterializeResult(metadata={
        "windows": len(windows), **{f"windows_{s}": n for s, n in counts.items()}, "split_rule": CHRONOLOGICAL_RULE,
        "shape": str(windows.x.shape), "horizon_steps": windows.horizon, "features": ", ".join(features),
        **stats, "links_without_windows": ", ".join(short) or "none",
        "noise_free_oracle": "attached (every partition is generator output)" if generated
        else "not attached (not generator output)",
        "partitions": len(days_regions), "path": dg.MetadataValue.path(str(path)),
    })


class BandwidthLSTMConfig(dg.Config):
    """Every knob of the guide's training CLI. --data-path is dwcp_windows' file and --output-dir
    this run's folder under NETASSETS_HOME; --window-size is dwcp_windows' `window`.

    Every value is checked when Dagster builds the step's config (a ValidationError naming the
    field and its allowed range), so a bad value never reaches torchrun."""

    epochs: int = Field(default=150, ge=1, le=100_000, description="training epochs, 1 to 100000")
    batch_size: int = Field(default=64, ge=2, le=1_000_000,
                            description="windows per batch, 2 to 1000000 (batch norm cannot train on one window)")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, allow_inf_nan=False,
                                 description="Adam learning rate, finite, in (0, 1]")
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="random seed, 0 to 2**32-1")
    lstm_sizes: list[int] = Field(default=[256, 128, 64], min_length=1, max_length=8,
                                  description="hidden size of each stacked LSTM, 1 to 8 layers of 1 to 4096 units")
    dense_sizes: list[int] = Field(default=[128, 64, 32], min_length=3, max_length=3,
                                   description="the three dense layers' sizes, each 1 to 4096")
    dropout: float = Field(default=0.3, ge=0, lt=1, allow_inf_nan=False, description="dropout between LSTMs and after dense 1, in [0, 1)")
    dense2_dropout: float = Field(default=0.21, ge=0, lt=1, allow_inf_nan=False, description="dropout after dense 2, in [0, 1)")
    early_stopping_patience: int = Field(default=15, ge=1, le=100_000,
                                         description="epochs without a better validation score before stopping, >= 1")
    lr_patience: int = Field(default=5, ge=0, le=100_000,
                             description="ReduceLROnPlateau: flat epochs before the rate is cut, >= 0")
    lr_factor: float = Field(default=0.5, gt=0, lt=1, allow_inf_nan=False,
                             description="ReduceLROnPlateau: factor the rate is multiplied by, in (0, 1)")
    nproc: int = Field(default=0, ge=0, le=64, description="torchrun processes, 0 to 64; 0 = one per GPU, or 1 on CPU")

    @field_validator("learning_rate", "dropout", "dense2_dropout", "lr_factor", mode="before")
    @classmethod
    def _finite(cls, value, info):
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise ValueError(f"{info.field_name}={value} is not a finite number; allowed: "
                             f"{cls.model_fields[info.field_name].description}")
        return value

    @field_validator("lstm_sizes", "dense_sizes")
    @classmethod
    def _layer_sizes(cls, value: list[int], info) -> list[int]:
        bad = [size for size in value if not 1 <= size <= MAX_LAYER]
        if bad:
            raise ValueError(f"{info.field_name}: every size must be in [1, {MAX_LAYER}], got {value}")
        return value


MAX_LAYER = 4096


@dg.asset(deps=[dwcp_windows], group_name=GROUP, kinds={"pytorch"})
def dwcp_bandwidth_lstm(context: dg.AssetExecutionContext, config: BandwidthLSTMConfig) -> dg.MaterializeResult:
    """BandwidthLSTM trained by torchrun on a frozen copy of the windows (best epoch by validation),
    judged on the test windows against persistence, mean and harmonic mean of the last 5 values
    and ridge AR(20), in this run; the verdict (evaluation.json) is what promotion reads."""
    from netassets.core.training import config_dict
    from netassets.dwcp.train import TrainConfig

    run = artifacts.run_dir(context.run_id)
    run.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifacts.windows_path(), run / artifacts.RUN_WINDOWS)
    train_config = TrainConfig(windows_path=str(run / artifacts.RUN_WINDOWS), out_dir=str(run),
                               **config.model_dump(exclude={"nproc"}))
    config_path = run / "train_config.json"
    write_json(config_path, config_dict(train_config))
    invocation = launch_torchrun(context, "netassets.dwcp.train", [f"--config={config_path}"], nproc=config.nproc)
    evaluation = evaluate_run(run)
    write_json(run / artifacts.EVALUATION, evaluation.to_dict())
    artifacts.set_latest_run(run)  # only after every rank exited cleanly and the run was judged
    if not evaluation.beats_strongest_baseline:
        context.log.warning(evaluation.verdict)
    training = invocation.get_materialize_result().metadata or {}
    return dg.MaterializeResult(metadata={**training, **evaluation.metadata()})


def evaluate_run(run: Path):
    """The verdict of record for one training run: its test predictions against every baseline."""
    windows = Windows.load(run / artifacts.RUN_WINDOWS)
    with np.load(run / PREDICTIONS) as saved:
        return report.model_evaluation(windows, saved["index"], saved["prediction"], CHRONOLOGICAL_RULE)


@dg.asset(deps=[dwcp_bandwidth_lstm], group_name=GROUP)
def dwcp_report() -> dg.MaterializeResult:
    """Test scores per target of the model next to every baseline, the generator's noise-free
    oracle (generated data only) and the seed's target; the seed-shaped report JSON;
    predicted-vs-actual scatter; training curves."""
    run = artifacts.latest_run()
    windows = Windows.load(run / artifacts.RUN_WINDOWS)
    with np.load(run / PREDICTIONS) as saved:
        index, predicted = saved["index"], saved["prediction"]
    history = json.loads((run / HISTORY).read_text())
    verdict = artifacts.load_evaluation(run)
    actual = windows.y[index].astype(np.float64)
    predictors = report.forecasts(windows, index, predicted)
    evaluation = report.evaluate(actual, predictors, windows.targets)
    document = report.document(evaluation, verdict, version=run.name, windows=windows, history=history,
                               model_size_mb=(run / CHECKPOINT).stat().st_size / 2**20)
    write_json(run / artifacts.REPORT, document)
    overall = document["performance_metrics"]["overall"]
    return dg.MaterializeResult(metadata={
        "verdict": dg.MetadataValue.text(verdict.verdict),
        "test_target_met (seed's rule)": overall["target_met"],
        "test_average_correlation": overall["average_correlation"],
        "test_average_mape": overall["average_mape"],
        "test_beats_rmse": table_markdown([{"baseline": name, "split": "test", **{t: "yes" if b else "NO" for t, b in won.items()}}
                                           for name, won in document["beats_rmse"].items()]),
        "test_overall": table_markdown(report.overall_rows(evaluation)),
        "test_scores": table_markdown(report.score_rows(evaluation)),
        "test_predicted_vs_actual": figure_metadata(
            report.scatter_figure(actual, predicted, predictors.get(report.ORACLE), windows.targets),
            save_to=run / "predictions_scatter.png"),
        "training_curves (train and validation)": figure_metadata(report.history_figure(history["epochs"]),
                                                                  save_to=run / "training_history.png"),
        "report": dg.MetadataValue.path(str(run / artifacts.REPORT)),
    })


@dg.asset(deps=[dwcp_report], group_name=GROUP, kinds={"onnx"})
def dwcp_onnx() -> dg.MaterializeResult:
    """Versioned ONNX export of the best checkpoint and its model_metadata JSON (the candidate)."""
    from netassets.core.training import load_checkpoint

    run = artifacts.latest_run()
    checkpoint = load_checkpoint(run / CHECKPOINT)
    version = dt.datetime.now(dt.timezone.utc).strftime("v%Y%m%d_%H%M%S")
    onnx_path = onnx_export.export(onnx_export.load_model(checkpoint), checkpoint["window"],
                                   len(checkpoint["features"]), run / f"bandwidth_lstm_{version}.onnx")
    evaluation = json.loads((run / artifacts.REPORT).read_text())
    metadata = onnx_export.model_metadata(checkpoint, evaluation, version=version, onnx_path=onnx_path,
                                          training_run=run.name)
    metadata_path = run / f"model_metadata_{version}.json"
    write_json(metadata_path, metadata)
    artifacts.set_candidate(onnx_path, metadata_path, version, run)
    return dg.MaterializeResult(metadata={
        "version": version, "onnx": dg.MetadataValue.path(str(onnx_path)),
        "model_metadata": dg.MetadataValue.path(str(metadata_path)), "size_mb": metadata["model_size_mb"],
    })


@dg.asset(deps=[dwcp_onnx], group_name=GROUP, kinds={"onnx"})
def dwcp_onnx_production() -> dg.MaterializeResult:
    """The production copy: replaced by the candidate only when every gate passes (checker,
    parity, contract, and beating the strongest baseline on test).

    Blocking checks stop this asset in the run that exported the candidate; the gates run again
    here so that a run selecting only this asset cannot promote an unchecked file either."""
    problems = candidate_problems()
    chosen = artifacts.candidate()
    if problems:
        evaluation = artifacts.load_evaluation(Path(chosen["run_dir"]))
        raise dg.Failure(description="ONNX candidate refused; production copy kept: " + "; ".join(problems),
                         metadata={**(evaluation.metadata() if evaluation else {}), "problems": "\n".join(problems),
                                   "candidate": chosen["onnx"]})
    target = artifacts.production_dir()
    target.mkdir(parents=True, exist_ok=True)
    copy_file(Path(chosen["onnx"]), target / artifacts.PRODUCTION_ONNX)
    copy_file(Path(chosen["metadata"]), target / artifacts.PRODUCTION_METADATA)
    return dg.MaterializeResult(metadata={"version": chosen["version"],
                                          "onnx": dg.MetadataValue.path(str(target / artifacts.PRODUCTION_ONNX))})
