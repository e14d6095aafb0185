"""The LENS model work behind the assets: group features, the global GMM, cluster assignment,
and the PatchTST classifier's dataset, verdicts and model files.

Model files live in two ``core.model_store.ModelStore``s under ``artifacts_dir("lens")``:

- ``gmm``: each lens_gmm run writes ``runs/<run id>/gmm.json`` (and its plot) and is recorded
  as the latest run once it succeeded; lens_clusters and lens_patchtst read that one. The GMM
  has no baseline verdict, so it is never "promoted": the latest finished fit is the live one.
- ``patchtst``: a training run's folder is named by a digest of its data and recipe (a
  re-materialisation with the same ones resumes from its ``last.pt``); a finished run proposes
  ``model.safetensors`` with its two held-out Evaluations (macro-F1 and accuracy), and
  lens_patchtst_production promotes it through the store's rule and the weights-load gate.

No torch at import (the Dagster modules import this one); sklearn and matplotlib are imported
by the functions that fit or draw.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from netassets.core.evaluation import Evaluation, promotion_refusal, split_by_day
from netassets.core.model_store import ModelStore, ModelVersion
from netassets.core.partitions import DayPartition
from netassets.core.plots import plt
from netassets.core.settings import landing_dir
from netassets.core.warehouse import DuckDBWarehouse, EmptyPartitionError, PartitionWrite
from netassets.lens.clustering import GmmModel, SelectionSettings, select_gmm, tree_importance_ranking
from netassets.lens.features import FEATURES, feature_frame, feature_matrix
from netassets.lens.patchtst import (
    WEIGHTS_FILE,
    baseline_scores,
    check_clusters_trainable,
    class_weights,
    load_classifier_data,
)

GMM_FILE = "gmm.json"
TRAIN_CONFIG_FILE = "config.json"
# The classifier must beat the strongest baseline on both, on the held-out days: macro-F1 so
# that rare clusters count, accuracy so that a model cannot trade many groups of a large
# cluster for a few of a small one.
VERDICT_METRICS = ("macro_f1", "accuracy")


def gmm_store() -> ModelStore:
    return ModelStore("lens", "gmm", produced_by="lens_gmm")


def patchtst_store() -> ModelStore:
    return ModelStore("lens", "patchtst", produced_by="lens_patchtst")


def gmm_path() -> Path:
    """The live GMM: the one of the last lens_gmm run that finished."""
    return gmm_store().latest_run() / GMM_FILE


def current_gmm() -> GmmModel:
    return GmmModel.load(gmm_path())


# ---------------------------------------------------------------------------------- truth


def regime_truth(day: dt.date, region: str) -> pl.DataFrame | None:
    """The generator's slot regimes for a region-day (generated data only), keyed by slot start."""
    path = landing_dir("lens") / region / day.isoformat() / f"slot-regimes-{day.isoformat()}.csv"
    if not path.is_file():
        return None
    return pl.read_csv(path).select(
        group_start=pl.from_epoch(pl.col("slot_start_ns") // 1000, time_unit="us"), regime=pl.col("regime")
    )


def adjusted_rand_vs_generator(frame: pl.DataFrame, labels: np.ndarray) -> float | None:
    """ARI of cluster labels against the recorded regimes, over the frame's (day, region) partitions."""
    from sklearn.metrics import adjusted_rand_score

    truths = []
    for day, region in frame.select("day", "region").unique().iter_rows():
        truth = regime_truth(day, region)
        if truth is None:
            return None
        truths.append(truth.with_columns(day=pl.lit(day), region=pl.lit(region)))
    labelled = frame.select("day", "region", "group_start").with_columns(cluster=labels)
    joined = labelled.join(pl.concat(truths), on=["day", "region", "group_start"], how="inner")
    if joined.height != frame.height:
        return None  # not every group matches a recorded slot: not generator data
    return float(adjusted_rand_score(joined["regime"].to_numpy(), joined["cluster"].to_numpy()))


# ---------------------------------------------------------------------------------- features


@dataclass
class FeatureWrite:
    write: PartitionWrite
    seconds: float
    non_finite: int
    summary: list[dict]  # mean / min / max of every feature


def write_group_features(warehouse: DuckDBWarehouse, partition: DayPartition) -> FeatureWrite:
    where = {"day": partition.day, "region": partition.other}
    groups = warehouse.read_partition(
        "lens_clean_groups", where, columns="day, region, group_id, group_start, n_observed, rtt_nearest", order_by="group_id"
    )
    if groups.is_empty():
        raise EmptyPartitionError(
            f"lens_group_features {partition.key}: lens_clean_groups holds no groups for this partition; "
            "materialise lens_clean_groups for it first"
        )
    started = time.perf_counter()
    frame = feature_frame(groups)
    elapsed = time.perf_counter() - started
    write = warehouse.replace_partition("lens_group_features", where, data=frame)
    non_finite = frame.select(pl.any_horizontal(~pl.col(FEATURES).is_finite()).sum()).item()
    summary = frame.select(FEATURES).describe().filter(pl.col("statistic").is_in(["mean", "min", "max"]))
    return FeatureWrite(write, elapsed, int(non_finite), summary.to_dicts())


# ---------------------------------------------------------------------------------- GMM


def sample_partitions(warehouse: DuckDBWarehouse, days_per_region: int, seed: int) -> list[tuple[dt.date, str]]:
    """``days_per_region`` random days of every region (the seed's bug: it sampled one region only)."""
    available = warehouse.query("SELECT DISTINCT day, region FROM lens_group_features ORDER BY region, day")
    if available.is_empty():
        raise ValueError("lens_group_features is empty: materialise it for some partitions first")
    rng = np.random.default_rng(seed)
    chosen = []
    for (region,), days in available.group_by("region", maintain_order=True):
        picks = rng.choice(days.height, size=min(days_per_region, days.height), replace=False)
        chosen += [(days["day"][int(i)], region) for i in sorted(picks)]
    return chosen


@dataclass
class GmmFit:
    model: GmmModel
    rows: list[dict]  # one score row per k
    frame: pl.DataFrame  # the training sample
    names: list[str]  # the features used
    labels: np.ndarray
    probability: np.ndarray
    keys: list[str]  # the training partitions
    ranking: list[dict] | None  # the tree importance ranking, for feature_selection='tree'
    ari: float | None  # against the generator's regimes, on generated data

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.model.k)


def fit_global_gmm(warehouse: DuckDBWarehouse, settings: SelectionSettings, features: Sequence[str],
                   feature_selection: str, tree_top_n: int, days_per_region: int,
                   log: logging.Logger | None = None) -> GmmFit:
    """The global GMM over ``days_per_region`` random days of every region; k by silhouette."""
    log = log or logging.getLogger(__name__)
    partitions = sample_partitions(warehouse, days_per_region, settings.seed)
    keys = [f"{day.isoformat()}|{region}" for day, region in partitions]
    log.info("training sample: %s", ", ".join(keys))
    frame = pl.concat(
        warehouse.read_partition("lens_group_features", {"day": day, "region": region}, order_by="group_id")
        for day, region in partitions
    )
    names = list(features)
    ranking = None
    if feature_selection == "tree":
        provisional, _ = select_gmm(feature_matrix(frame, names), names, settings)
        provisional_labels, _ = provisional.predict(feature_matrix(frame, names))
        ranking = tree_importance_ranking(feature_matrix(frame, names), names, provisional_labels, settings.seed)
        names = [row["feature"] for row in ranking[:tree_top_n]]
        log.info("tree importance kept %s", names)
    matrix = feature_matrix(frame, names)
    model, rows = select_gmm(matrix, names, settings)
    labels, probability = model.predict(matrix)
    return GmmFit(model, rows, frame, names, labels, probability, keys, ranking, adjusted_rand_vs_generator(frame, labels))


def save_gmm(fit: GmmFit, run_id: str, settings: dict[str, Any]) -> Path:
    """Write the fit into its run folder and make it the live GMM; returns the file."""
    store = gmm_store()
    fit.model.info = {"trained_on": fit.keys, "selection": fit.rows, "settings": settings, "tree_ranking": fit.ranking,
                      "trained_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    path = store.run_dir(run_id) / GMM_FILE
    fit.model.save(path)
    return path


def finish_gmm(run_id: str, fit: GmmFit) -> None:
    gmm_store().finish_run(run_id, gmm_version=fit.model.version, k=fit.model.k)


def gmm_figure(fit: GmmFit):
    """Silhouette per k, and the training sample coloured by cluster."""
    x, y = ("mean", "std") if {"mean", "std"} <= set(fit.names) else (fit.names[0], fit.names[-1])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ks = [r["k"] for r in fit.rows]
    left.plot(ks, [r["silhouette"] for r in fit.rows], "o-")
    for r in fit.rows:
        if r["rejected"]:
            left.plot(r["k"], r["silhouette"], "rx")
    left.set(xlabel="k", ylabel="silhouette", title="silhouette per k (x: near-empty cluster)")
    scatter = right.scatter(fit.frame[x], fit.frame[y], c=fit.labels, s=6, cmap="tab20")
    right.set(xlabel=x, ylabel=y, title="training sample by cluster")
    fig.colorbar(scatter, ax=right, label="cluster")
    return fig


def gmm_problems(model: GmmModel) -> list[str]:
    """Why the live GMM does not describe regimes well (empty: it does): its k must have been a
    valid choice (no near-empty cluster) with a positive silhouette."""
    rows = {row["k"]: row for row in model.info.get("selection", [])}
    chosen = rows.get(model.k)
    if chosen is None:
        return [f"the GMM records no selection score for its k={model.k}"]
    problems = []
    if chosen["rejected"]:
        problems.append(f"k={model.k} leaves a near-empty cluster ({chosen['smallest_cluster']} groups)")
    if not chosen["silhouette"] > 0:
        problems.append(f"silhouette {chosen['silhouette']:.3g} at k={model.k}: clusters overlap more than they separate")
    return problems


# ---------------------------------------------------------------------------------- clusters


@dataclass
class ClusterWrite:
    write: PartitionWrite
    gmm: GmmModel
    labels: np.ndarray
    probability: np.ndarray
    seconds: float
    ari: float | None


def assign_clusters(warehouse: DuckDBWarehouse, partition: DayPartition) -> ClusterWrite:
    """Cluster id and posterior probability of every group of the partition, from the live GMM."""
    where = {"day": partition.day, "region": partition.other}
    gmm = current_gmm()
    features = warehouse.read_partition("lens_group_features", where, order_by="group_id")
    if features.is_empty():
        raise EmptyPartitionError(
            f"lens_clusters {partition.key}: lens_group_features holds no groups for this partition; materialise it first"
        )
    started = time.perf_counter()
    labels, probability = gmm.predict(feature_matrix(features, gmm.features))
    elapsed = time.perf_counter() - started
    frame = features.select("day", "region", "group_id", "group_start").with_columns(
        cluster=pl.Series(labels, dtype=pl.Int32), probability=pl.Series(probability), gmm_version=pl.lit(gmm.version)
    )
    write = warehouse.replace_partition("lens_clusters", where, data=frame)
    return ClusterWrite(write, gmm, labels, probability, elapsed, adjusted_rand_vs_generator(frame, labels))


# ---------------------------------------------------------------------------------- PatchTST


@dataclass
class PatchTSTRun:
    """A training run's inputs, written into its run folder before torchrun starts."""

    run_id: str  # digest of the GMM, the recipe and the data: the same ones resume the same folder
    folder: Path
    gmm: GmmModel
    masks: dict[str, np.ndarray]
    split_days: dict[str, list[str]]
    weights: np.ndarray
    baselines: dict[str, dict[str, float]]
    resumes: bool  # a last.pt from an earlier, interrupted run with the same inputs is there

    @property
    def dataset(self) -> Path:
        return self.folder / "dataset.npz"

    @property
    def config_file(self) -> Path:
        return self.folder / TRAIN_CONFIG_FILE

    def worker_args(self) -> list[str]:
        return ["--config", str(self.config_file), "--data", str(self.dataset), "--out-dir", str(self.folder)]

    def result(self) -> dict[str, Any] | None:
        path = self.folder / "result.json"
        return json.loads(path.read_text()) if path.is_file() else None


def prepare_patchtst_run(warehouse: DuckDBWarehouse, channels: str, val_fraction: float, test_fraction: float,
                         seed: int, identity: dict[str, Any]) -> PatchTSTRun:
    """Label every group with the live GMM, split by day, standardise on training days, score the
    baselines on the test days, and write the dataset into the run folder named by its digest."""
    gmm = current_gmm()
    data = load_classifier_data(warehouse, gmm, channels)
    masks, split_days = split_by_day(data.frame["day"].to_numpy(), val_fraction, test_fraction)
    labels = {split: data.labels[mask] for split, mask in masks.items()}
    check_clusters_trainable(labels, gmm.k)
    # Standardise each channel with training-day statistics only; the same numbers go with the weights.
    train_inputs = data.inputs[masks["train"]]
    mean = train_inputs.mean(axis=(0, 1))
    std = train_inputs.std(axis=(0, 1)) + 1e-6
    inputs = {split: ((data.inputs[mask] - mean) / std).astype(np.float32) for split, mask in masks.items()}
    weights = class_weights(labels["train"], gmm.k)
    baselines = baseline_scores(inputs["train"], labels["train"], inputs["test"], labels["test"], gmm.k, seed)

    digest = hashlib.sha256(json.dumps({"gmm": gmm.version, "config": identity}, sort_keys=True).encode())
    for split in ("train", "val", "test"):
        digest.update(inputs[split].tobytes())
        digest.update(labels[split].tobytes())
    run_id = digest.hexdigest()[:16]
    folder = patchtst_store().run_dir(run_id)
    np.savez(folder / "dataset.npz", **{f"x_{s}": inputs[s] for s in inputs}, **{f"y_{s}": labels[s] for s in labels},
             class_weight=weights, input_mean=mean, input_std=std)
    (folder / "result.json").unlink(missing_ok=True)
    return PatchTSTRun(run_id, folder, gmm, masks, split_days, weights, baselines, (folder / "last.pt").exists())


def held_out_evaluations(scores: dict[str, dict[str, float]], rows: int, test_days: list[str]) -> list[Evaluation]:
    """One Evaluation per verdict metric, all on the same test groups."""
    return [Evaluation(model="patchtst", metric=metric, higher_is_better=True, scores=scores, rows=rows,
                       split_rule=f"whole held-out days {', '.join(test_days)}, every region")
            for metric in VERDICT_METRICS]


def refusal_of(evaluations: Sequence[Evaluation]) -> str | None:
    """The first verdict metric's reason to refuse promotion, or None when the model wins on all."""
    return next((reason for reason in map(promotion_refusal, evaluations) if reason), None)


@dataclass
class PatchTSTCandidate:
    version: ModelVersion
    evaluations: list[Evaluation]
    result: dict[str, Any] = field(default_factory=dict)


def propose_patchtst(run: PatchTSTRun, result: dict[str, Any], channels: str, dagster_run: str) -> PatchTSTCandidate:
    """Score the finished run next to its baselines and make its weights the candidate for production."""
    evaluations = held_out_evaluations(
        {"patchtst": {"accuracy": result["test_accuracy"], "macro_f1": result["test_macro_f1"]}, **run.baselines},
        rows=int(run.masks["test"].sum()), test_days=run.split_days["test"])
    store = patchtst_store()
    store.finish_run(run.run_id, dagster_run=dagster_run)
    version = store.propose(run.run_id, {"model": WEIGHTS_FILE, "config": TRAIN_CONFIG_FILE}, evaluations,
                            gmm_version=run.gmm.version, channels=channels, split_days=run.split_days,
                            dagster_run=dagster_run)
    return PatchTSTCandidate(version, evaluations, result)


def weights_load(version: ModelVersion) -> list[str]:
    """Promotion gate and production check: the weights file rebuilds the classifier it was saved from."""
    from netassets.lens.patchtst import load_weights_model

    try:
        model, metadata = load_weights_model(version.path("model"))
    except Exception as exc:  # any unreadable or mismatched file is the problem reported
        return [f"{version.folder / version.files.get('model', WEIGHTS_FILE)} does not load: {exc}"]
    arch = json.loads(metadata["arch"])
    if model.config.num_targets != arch["num_targets"]:
        return [f"the rebuilt classifier has {model.config.num_targets} outputs, the weights {arch['num_targets']}"]
    return []


def confusion_figure(matrix: list[list[int]], title: str):
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(matrix), 0.8 + 0.6 * len(matrix)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="black" if count < matrix.max() / 2 else "white")
    ax.set(xlabel="predicted cluster", ylabel="GMM cluster", title=title, xticks=range(len(matrix)), yticks=range(len(matrix)))
    return fig
