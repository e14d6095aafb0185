"""The DWCP work outside Dagster: one raw partition, the windows, a training run, its report and
ONNX export, and the model store every model file goes through.

Under ``artifacts_dir("dwcp")``::

    windows.npz                            dwcp_windows
    bandwidth_lstm/                        ``model_store()`` (core.model_store.ModelStore)
        runs/<run_id>/                     one training run: windows.npz (the copy it trained on),
                                           config.json (its TrainConfig), best_model.pt,
                                           model.safetensors, history.json, predictions.npz,
                                           evaluation.json, bandwidth_predictor_report.json, plots,
                                           bandwidth_lstm_<v>.onnx, model_metadata_<v>.json
        latest_run.json                    the last training run that finished (after it was judged)
        candidate.json                     the last exported ONNX, its files and its test verdict
        production/<run_id>.<time>.<n>/ + production.json   the live ONNX and metadata, replaced only when the
                                           candidate passes every gate (``gates.py``) and beats
                                           its strongest baseline on test

A failed retrain writes only into its own run folder, so it never damages the files that
downstream assets or the production copy point at.

No torch at module level: the Dagster modules import this one.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from netassets.core.evaluation import Evaluation
from netassets.core.files import changed_since, file_states, inside_root, write_json
from netassets.core.model_store import ModelStore, ModelVersion
from netassets.core.settings import artifacts_dir, landing_dir, safe_name
from netassets.core.sql import load_sql
from netassets.dwcp.config import TrainConfig
from netassets.dwcp.sample import expected_targets, is_generated
from netassets.dwcp.schema import (
    DIMENSION, FEATURES, LINK, NAME, STEP_SECONDS, TARGETS, RawFileError, landing_file, optional_day, read_raw_file,
)
from netassets.dwcp.windows import CHRONOLOGICAL_RULE, SPLITS, Windows, build_windows, chronological_split

if TYPE_CHECKING:  # the resource type only; this module needs no dagster
    from netassets.core.warehouse import DuckDBWarehouse

MODEL = "bandwidth_lstm"
# Written by netassets.dwcp.train into the run folder.
CHECKPOINT = "best_model.pt"
WEIGHTS = "model.safetensors"
HISTORY = "history.json"
PREDICTIONS = "predictions.npz"
# Written by the assets into the run folder.
CONFIG = "config.json"
REPORT = "bandwidth_predictor_report.json"
EVALUATION = "evaluation.json"  # core.evaluation's verdict on test, written by dwcp_bandwidth_lstm
RUN_WINDOWS = "windows.npz"


def model_store() -> ModelStore:
    """BandwidthLSTM's store (built on each call: NETASSETS_HOME may change between runs)."""
    return ModelStore(NAME, MODEL, produced_by="dwcp_bandwidth_lstm")


def windows_path() -> Path:
    return artifacts_dir(NAME) / "windows.npz"


def load_evaluation(run: Path) -> Evaluation | None:
    """The verdict dwcp_bandwidth_lstm recorded for a training run (None when it recorded none)."""
    path = run / EVALUATION
    return Evaluation.from_dict(json.loads(path.read_text())) if path.is_file() else None


# ---- dwcp_raw -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RawPartition:
    path: Path
    frame: pl.DataFrame  # validated, with the day and source file added
    ignored: list[str]
    states: dict[Path, tuple[int, int]]  # the file's (size, mtime) as read: the landing fingerprint's input

    def summary(self, rows: int) -> dict[str, Any]:
        links = self.frame.select("node_id", "peer_id").unique().height
        return {"links": links, "ignored_columns": ", ".join(self.ignored) or "none",
                # gaps in the series, skipped by windows
                "missing_rows": links * 24 * 3600 // STEP_SECONDS - rows}


def read_partition(region: str, day: dt.date) -> RawPartition:
    """One landing file, validated; refused unread when it leads outside the landing folder and
    refused when it changed while it was read (a copy still in progress)."""
    path = landing_file(region, day)
    root = landing_dir(NAME)
    if path.exists() and not inside_root(path, root):
        raise RawFileError(f"{path}: leads outside the landing folder {root} (a link?); refused without reading it")
    before = file_states([path]) if path.exists() else {}
    frame, ignored = read_raw_file(path, region, day)
    if changed_since(before):  # what was read may be a prefix
        raise RawFileError(f"{path}: changed while it was read (still being written?); nothing stored, retry once it is complete")
    return RawPartition(path, frame.with_columns(day=pl.lit(day), source_file=pl.lit(str(path))), ignored, before)


# ---- dwcp_windows ---------------------------------------------------------------------------

@dataclass
class BuiltWindows:
    windows: Windows
    path: Path
    generated: bool
    partitions: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    short_links: list[str] = field(default_factory=list)


def make_windows(warehouse: "DuckDBWarehouse", *, window: int, horizon_minutes: int, regions: list[str],
                 first_day: str, last_day: str, throughput_only: bool) -> BuiltWindows:
    """Windows of ``window`` minutes per link, target ``horizon_minutes`` later, split 70/15/15 by
    target time, saved as ``windows_path()``. The generator's noise-free oracle is attached only
    when every partition read is generator output (an unchanged generator sidecar)."""
    if horizon_minutes * 60 % STEP_SECONDS:
        raise ValueError(f"horizon_minutes={horizon_minutes} is not a whole number of {STEP_SECONDS}s steps")
    params = {"regions": [safe_name(r, DIMENSION) for r in regions],
              "first_day": optional_day(first_day, "first_day"), "last_day": optional_day(last_day, "last_day")}
    frame = warehouse.query(load_sql(NAME, "dwcp_series"), params)
    features, targets = (["throughput_mbps"], ["throughput_mbps"]) if throughput_only else (FEATURES, TARGETS)
    windows = build_windows(frame, link_columns=LINK, time_column="timestamp", features=features, targets=targets,
                            window=window, horizon=horizon_minutes * 60 // STEP_SECONDS, step=STEP_SECONDS)
    windows.split = chronological_split(windows.target_time)
    days_regions = frame.select("day", "region").unique().sort("day", "region").rows()
    # The oracle knows the generator's formulas: it is a ceiling on generated data, noise elsewhere.
    generated = all(is_generated(landing_file(region, day)) for day, region in days_regions)
    if generated:
        windows.extra["oracle"] = expected_targets(windows.target_time)[:, [TARGETS.index(t) for t in targets]]
    partitions = [f"{day.isoformat()}|{region}" for day, region in days_regions]
    windows.stats["partitions"] = partitions
    path = windows.save(windows_path())
    counts = {s: int((windows.split == i).sum()) for i, s in enumerate(SPLITS)}
    stats = {k: v for k, v in windows.stats.items() if k not in ("partitions", "links_without_windows")}
    short = list(windows.stats["links_without_windows"])
    metadata = {
        "windows": len(windows), **{f"windows_{s}": n for s, n in counts.items()}, "split_rule": CHRONOLOGICAL_RULE,
        "shape": str(windows.x.shape), "horizon_steps": windows.horizon, "features": ", ".join(features),
        **stats, "links_without_windows": ", ".join(short) or "none",
        "noise_free_oracle": "attached (every partition is generator output)" if generated
        else "not attached (not generator output)",
        "partitions": len(days_regions),
    }
    return BuiltWindows(windows, path, generated, partitions, metadata, short)


def windows_usable(path: Path | None = None) -> tuple[bool, dict[str, Any]]:
    """Every split holds windows and no value is NaN or infinite."""
    windows = Windows.load(path or windows_path())
    counts = {s: int((windows.split == i).sum()) for i, s in enumerate(SPLITS)}
    finite = bool(np.isfinite(windows.x).all() and np.isfinite(windows.y).all())
    return finite and min(counts.values()) > 0, {**{f"windows_{s}": n for s, n in counts.items()}, "all_finite": finite}


# ---- dwcp_bandwidth_lstm --------------------------------------------------------------------

def prepare_run(store: ModelStore, run_id: str, config: TrainConfig) -> tuple[Path, list[str]]:
    """The run's folder with a frozen copy of the windows and its config.json; the worker's args."""
    run = store.run_dir(run_id)
    source = windows_path()
    if not source.is_file():
        raise FileNotFoundError(f"{source} not found: materialise dwcp_windows first")
    shutil.copyfile(source, run / RUN_WINDOWS)
    config.write(run / CONFIG)
    return run, [f"--config={run / CONFIG}", f"--windows={run / RUN_WINDOWS}", f"--out={run}"]


def evaluate_run(run: Path) -> Evaluation:
    """The verdict of record for one training run: its test predictions against every baseline."""
    from netassets.dwcp import report

    windows = Windows.load(run / RUN_WINDOWS)
    with np.load(run / PREDICTIONS) as saved:
        return report.model_evaluation(windows, saved["index"], saved["prediction"], CHRONOLOGICAL_RULE)


def conclude_run(store: ModelStore, run_id: str) -> Evaluation:
    """Judge the finished run, record its verdict, and make it the run later assets read."""
    run = store.run_dir(run_id)
    evaluation = evaluate_run(run)
    write_json(run / EVALUATION, evaluation.to_dict())
    store.finish_run(run_id, verdict=evaluation.verdict)  # only after every rank exited cleanly and it was judged
    return evaluation


# ---- dwcp_report ----------------------------------------------------------------------------

@dataclass
class RunReport:
    run: Path
    document: dict
    verdict: Evaluation
    evaluation: dict  # report.evaluate's scores per predictor
    tables: dict[str, str]
    figures: dict[str, Any]  # metadata name -> matplotlib figure, with save_to path in ``figure_paths``
    figure_paths: dict[str, Path]


def build_report(store: ModelStore) -> RunReport:
    """Test scores per target of the latest run next to every baseline, the generator's oracle
    (generated data only) and the seed's target; the seed-shaped report JSON; the figures."""
    from netassets.core.plots import table_markdown
    from netassets.dwcp import report

    run = store.latest_run()
    windows = Windows.load(run / RUN_WINDOWS)
    with np.load(run / PREDICTIONS) as saved:
        index, predicted = saved["index"], saved["prediction"]
    history = json.loads((run / HISTORY).read_text())
    verdict = load_evaluation(run)
    if verdict is None:
        raise FileNotFoundError(f"{run / EVALUATION} not found: the training run was not judged; "
                                f"materialise dwcp_bandwidth_lstm again")
    actual = windows.y[index].astype(np.float64)
    predictors = report.forecasts(windows, index, predicted)
    evaluation = report.evaluate(actual, predictors, windows.targets)
    document = report.document(evaluation, verdict, version=run.name, windows=windows, history=history,
                               model_size_mb=(run / CHECKPOINT).stat().st_size / 2**20)
    write_json(run / REPORT, document)
    tables = {
        "test_beats_rmse": table_markdown([{"baseline": name, "split": "test", **{t: "yes" if b else "NO" for t, b in won.items()}}
                                           for name, won in document["beats_rmse"].items()]),
        "test_overall": table_markdown(report.overall_rows(evaluation)),
        "test_scores": table_markdown(report.score_rows(evaluation)),
    }
    figures = {
        "test_predicted_vs_actual": report.scatter_figure(actual, predicted, predictors.get(report.ORACLE), windows.targets),
        "training_curves (train and validation)": report.history_figure(history["epochs"]),
    }
    paths = {"test_predicted_vs_actual": run / "predictions_scatter.png",
             "training_curves (train and validation)": run / "training_history.png"}
    return RunReport(run, document, verdict, evaluation, tables, figures, paths)


# ---- dwcp_onnx ------------------------------------------------------------------------------

def export_candidate(store: ModelStore) -> ModelVersion:
    """Versioned ONNX export of the latest run's best checkpoint and its model_metadata JSON,
    proposed as the production candidate with the run's test verdict."""
    from netassets.core.training import load_checkpoint
    from netassets.dwcp import onnx_export

    run = store.latest_run()
    checkpoint = load_checkpoint(run / CHECKPOINT)
    version = dt.datetime.now(dt.timezone.utc).strftime("v%Y%m%d_%H%M%S")
    onnx_path = onnx_export.export(onnx_export.load_model(checkpoint), checkpoint["window"],
                                   len(checkpoint["features"]), run / f"bandwidth_lstm_{version}.onnx")
    report_path = run / REPORT
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path} not found: materialise dwcp_report first")
    metadata = onnx_export.model_metadata(checkpoint, json.loads(report_path.read_text()), version=version,
                                          onnx_path=onnx_path, training_run=run.name)
    metadata_path = write_json(run / f"model_metadata_{version}.json", metadata)
    evaluation = load_evaluation(run)
    files = {"onnx": onnx_path.name, "metadata": Path(metadata_path).name, "checkpoint": CHECKPOINT}
    if (run / WEIGHTS).is_file():
        files["weights"] = WEIGHTS
    return store.propose(run.name, files, [evaluation] if evaluation else [], version=version,
                         size_mb=metadata["model_size_mb"])
