"""LENS models: group features -> global GMM -> clusters per partition -> PatchTST classifier.

lens_gmm and lens_patchtst are unpartitioned model assets reading what they need from
DuckDB; lens_patchtst trains in a ``torchrun`` child launched through dagster-pipes and is
judged by ``netassets.core.evaluation`` on held-out days, next to the majority class and a
logistic regression on the same test groups. lens_patchtst_production copies its checkpoint
only when it beats the strongest baseline on both verdict metrics (see ``VERDICT_METRICS``).
"""

import datetime as dt
import math
import hashlib
import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field, field_validator, model_validator

from netassets.core.evaluation import Evaluation, promotion_refusal, refuse_unless_promotable, split_by_day
from netassets.core.files import copy_file, write_json
from netassets.core.partitions import context_partition
from netassets.core.plots import figure_metadata, plt, table_markdown
from netassets.core.settings import artifacts_dir, landing_dir
from netassets.core.torchrun import launch_torchrun
from netassets.core.warehouse import POOL, DuckDBWarehouse, EmptyPartitionError
from netassets.lens.assets import LENS_CLEAN
from netassets.lens.clustering import GmmModel, SelectionSettings, select_gmm, tree_importance_ranking
from netassets.lens.features import FEATURES, feature_frame, feature_matrix
from netassets.lens.partitions import REGION, lens_partitions
from netassets.lens.patchtst import (
    CHANNEL_COLUMNS,
    baseline_scores,
    channel_columns,
    check_clusters_trainable,
    class_weights,
    TrainConfig,
    load_classifier_data,
)


def gmm_path() -> Path:
    return artifacts_dir("lens") / "gmm.json"


def patchtst_dir() -> Path:
    return artifacts_dir("lens") / "patchtst"


def candidate_path() -> Path:
    return patchtst_dir() / "candidate.json"


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
    from sklearn.metrics import adjusted_rand_score  # not at import: the code location would load sklearn

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


@dg.asset(
    group_name="lens",
    partitions_def=lens_partitions,
    deps=[LENS_CLEAN],
    pool=POOL,
    kinds={"duckdb", "numpy"},
    description="Per-group features of the nearest-filled RTT (seed's 7 + std + missing share), one row per group.",
)
def lens_group_features(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    partition = context_partition(context, REGION)
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
    rows = warehouse.replace_partition("lens_group_features", where, data=frame)
    non_finite = frame.select(pl.any_horizontal(~pl.col(FEATURES).is_finite()).sum()).item()
    if non_finite:
        context.log.warning("%s: %d group(s) have non-finite features; the finite-features check will fail", partition.key, non_finite)
    summary = frame.select(FEATURES).describe().filter(pl.col("statistic").is_in(["mean", "min", "max"]))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "groups_per_s": rows / max(elapsed, 1e-9),
            "non_finite_groups": int(non_finite),
            "feature_summary": table_markdown(summary.to_dicts()),
        }
    )


# ---------------------------------------------------------------------------------- GMM


class LensGmmConfig(dg.Config):
    k_min: int = Field(default=6, description="smallest number of clusters tried")
    k_max: int = Field(default=15, description="largest number of clusters tried")
    restarts: int = Field(default=5, description="k-means++ initialisations per k; the best likelihood is kept")
    max_iter: int = Field(default=300, description="EM iterations per restart")
    min_cluster_share: float = Field(default=0.01, description="reject a k whose smallest cluster is under this share")
    silhouette_sample: int = Field(default=5000, description="groups sampled to compute the silhouette")
    days_per_region: int = Field(default=1, description="random days per region in the training sample")
    seed: int = 0
    features: list[str] = Field(default=list(FEATURES), description="candidate features (columns of lens_group_features)")
    feature_selection: str = Field(default="fixed", description="'fixed': use `features`; 'tree': the seed's decision-tree ranking")
    tree_top_n: int = Field(default=7, description="features kept by the 'tree' selection")

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in FEATURES]
        if unknown or not value:
            raise ValueError(f"unknown or no features {unknown}; choose from {list(FEATURES)}")
        return value

    @field_validator("feature_selection")
    @classmethod
    def _known_selection(cls, value: str) -> str:
        if value not in ("fixed", "tree"):
            raise ValueError(f"feature_selection must be 'fixed' or 'tree', got {value!r}")
        return value

    @model_validator(mode="after")
    def _valid_settings(self) -> "LensGmmConfig":
        self.settings()
        if self.days_per_region < 1 or not 1 <= self.tree_top_n <= len(self.features):
            raise ValueError("days_per_region must be >= 1 and tree_top_n in 1..len(features)")
        if self.silhouette_sample < 2:
            raise ValueError(f"silhouette_sample must be >= 2 groups, got {self.silhouette_sample}")
        return self

    def settings(self) -> SelectionSettings:
        return SelectionSettings(self.k_min, self.k_max, self.restarts, self.max_iter, self.min_cluster_share,
                                 self.silhouette_sample, self.seed)


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


def _gmm_figure(rows: list[dict], frame: pl.DataFrame, labels: np.ndarray, x: str, y: str):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    ks = [r["k"] for r in rows]
    left.plot(ks, [r["silhouette"] for r in rows], "o-")
    for r in rows:
        if r["rejected"]:
            left.plot(r["k"], r["silhouette"], "rx")
    left.set(xlabel="k", ylabel="silhouette", title="silhouette per k (x: near-empty cluster)")
    scatter = right.scatter(frame[x], frame[y], c=labels, s=6, cmap="tab20")
    right.set(xlabel=x, ylabel=y, title="training sample by cluster")
    fig.colorbar(scatter, ax=right, label="cluster")
    return fig


@dg.asset(
    group_name="lens",
    deps=[lens_group_features],
    kinds={"sklearn"},
    description="Global diagonal GMM over one random day per region; k by silhouette; parameters saved as JSON.",
)
def lens_gmm(context: dg.AssetExecutionContext, config: LensGmmConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    partitions = sample_partitions(warehouse, config.days_per_region, config.seed)
    keys = [f"{day.isoformat()}|{region}" for day, region in partitions]
    context.log.info("training sample: %s", ", ".join(keys))
    frame = pl.concat(
        warehouse.read_partition("lens_group_features", {"day": day, "region": region}, order_by="group_id")
        for day, region in partitions
    )
    settings = config.settings()
    names = list(config.features)
    ranking = None
    if config.feature_selection == "tree":
        provisional, _ = select_gmm(feature_matrix(frame, names), names, settings)
        provisional_labels, _ = provisional.predict(feature_matrix(frame, names))
        ranking = tree_importance_ranking(feature_matrix(frame, names), names, provisional_labels, config.seed)
        names = [row["feature"] for row in ranking[: config.tree_top_n]]
        context.log.info("tree importance kept %s", names)
    matrix = feature_matrix(frame, names)
    model, rows = select_gmm(matrix, names, settings)
    labels, probability = model.predict(matrix)
    sizes = np.bincount(labels, minlength=model.k)
    ari = adjusted_rand_vs_generator(frame, labels)
    model.info = {"trained_on": keys, "selection": rows, "settings": config.model_dump(), "tree_ranking": ranking,
                  "trained_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    model.save(gmm_path())
    x_axis, y_axis = ("mean", "std") if {"mean", "std"} <= set(names) else (names[0], names[-1])
    metadata = {
        "k": model.k,
        "gmm_version": model.version,
        "features": dg.MetadataValue.json(names),
        "silhouette_per_k": table_markdown(rows),
        "cluster_sizes": dg.MetadataValue.json({str(i): int(n) for i, n in enumerate(sizes)}),
        "mean_assignment_probability": float(probability.mean()),
        "trained_on_partitions": dg.MetadataValue.json(keys),
        "training_groups": len(frame),
        "plot": figure_metadata(_gmm_figure(rows, frame, labels, x_axis, y_axis), save_to=gmm_path().with_suffix(".png")),
        "path": dg.MetadataValue.path(str(gmm_path())),
    }
    if ranking is not None:
        metadata["tree_importance"] = table_markdown(ranking)
    if ari is not None:
        metadata["ari_vs_generator_regimes"] = ari
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(model.version))


# ---------------------------------------------------------------------------------- clusters


@dg.asset(
    group_name="lens",
    partitions_def=lens_partitions,
    deps=[lens_group_features, lens_gmm],
    pool=POOL,
    kinds={"duckdb"},
    description="Cluster id and its posterior probability for every group, from the current lens_gmm.",
)
def lens_clusters(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    partition = context_partition(context, REGION)
    where = {"day": partition.day, "region": partition.other}
    gmm = GmmModel.load(gmm_path())
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
    rows = warehouse.replace_partition("lens_clusters", where, data=frame)
    metadata = {
        "dagster/row_count": rows,
        "gmm_version": gmm.version,
        "cluster_sizes": dg.MetadataValue.json({str(i): int(n) for i, n in enumerate(np.bincount(labels, minlength=gmm.k))}),
        "mean_probability": float(probability.mean()),
        "groups_per_s_assignment": rows / max(elapsed, 1e-9),
    }
    ari = adjusted_rand_vs_generator(frame, labels)
    if ari is not None:
        metadata["ari_vs_generator_regimes"] = ari
    return dg.MaterializeResult(metadata=metadata)


# ---------------------------------------------------------------------------------- PatchTST


class LensPatchTSTConfig(dg.Config):
    channels: str = Field(default="nearest", description="input channel(s): 'token' (-1 for gaps), 'nearest', or 'both'")
    nproc: int = Field(default=0, description="torchrun processes; 0: one per GPU (1 on CPU)")
    val_fraction: float = Field(default=0.15, description="share of days (the latest before test) for validation")
    test_fraction: float = Field(default=0.15, description="share of days (the latest) held out for test")
    epochs: int = 30
    batch_size: int = Field(default=64, description="per process")
    lr: float = Field(default=3e-3, description="peak learning rate")
    lr_schedule: str = Field(default="cosine", description="'cosine': linear warmup, then cosine decay; 'constant'")
    warmup_fraction: float = Field(default=0.05, description="share of all optimiser steps spent warming up")
    min_lr_ratio: float = Field(default=0.1, description="the cosine schedule ends at this share of lr")
    label_smoothing: float = 0.0
    weight_decay: float = 0.01
    amp: bool = Field(default=True, description="bfloat16 autocast; ignored on CPU")
    patch_length: int = 10
    patch_stride: int = Field(default=5, description="0: same as patch_length")
    d_model: int = 64
    num_attention_heads: int = 4
    num_hidden_layers: int = 2
    ffn_dim: int = 128
    attention_dropout: float = 0.1
    ff_dropout: float = 0.2
    positional_dropout: float = 0.05
    path_dropout: float = 0.05
    eval_interval: int = Field(default=1, description="epochs between validations")
    save_interval: int = Field(default=1, description="epochs between last.pt checkpoints")
    monitor_metric: str = Field(default="val_macro_f1", description="val_loss, val_accuracy or val_macro_f1: picks best.pt")
    num_workers: int = Field(default=0, description="DataLoader workers per process")
    seed: int = 0
    max_steps: int = Field(default=0, description="stop after this many optimiser steps (resumable); 0: no limit")

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: str) -> str:
        channel_columns(value)
        return value

    @model_validator(mode="after")
    def _valid_training(self) -> "LensPatchTSTConfig":
        for name, value in self:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if self.nproc < 0:
            raise ValueError(f"nproc must be >= 0, got {self.nproc}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError("val_fraction and test_fraction must be in (0, 1)")
        self.train_config("", "")
        return self

    def train_config(self, data: str, out_dir: str) -> TrainConfig:
        names = set(TrainConfig.__dataclass_fields__) - {"data", "out_dir", "resume", "resume_from"}
        return TrainConfig(data=data, out_dir=out_dir, **{name: getattr(self, name) for name in names})

    def identity(self) -> dict:
        """What makes a run the same run: budget and parallelism knobs may change on resume."""
        return self.model_dump(exclude={"epochs", "max_steps", "nproc", "num_workers", "eval_interval", "save_interval"})


# The classifier must beat the strongest baseline on both, on the held-out days: macro-F1 so
# that rare clusters count, accuracy so that a model cannot trade many groups of a large
# cluster for a few of a small one.
VERDICT_METRICS = ("macro_f1", "accuracy")


def held_out_evaluations(scores: dict[str, dict[str, float]], rows: int, test_days: list[str]) -> list[Evaluation]:
    """One Evaluation per verdict metric, all on the same test groups."""
    return [Evaluation(model="patchtst", metric=metric, higher_is_better=True, scores=scores, rows=rows,
                       split_rule=f"whole held-out days {', '.join(test_days)}, every region")
            for metric in VERDICT_METRICS]


def refusal_of(evaluations: list[Evaluation]) -> str | None:
    """The first verdict metric's reason to refuse promotion, or None when the model wins on all."""
    return next((reason for reason in map(promotion_refusal, evaluations) if reason), None)


def evaluation_metadata(evaluations: list[Evaluation]) -> dict:
    """The side-by-side test table (every scorer, both metrics) and a verdict line per metric."""
    more_verdicts = "".join(f"\n\n**Verdict on {e.metric}:** {e.verdict}" for e in evaluations[1:])
    return {
        **evaluations[0].metadata(),
        "evaluation": dg.MetadataValue.md(evaluations[0].markdown() + more_verdicts),
        "verdict": dg.MetadataValue.text("; ".join(e.verdict for e in evaluations)),
        "beats_strongest_baseline": dg.MetadataValue.bool(refusal_of(evaluations) is None),
        "strongest_baseline": dg.MetadataValue.text(", ".join(f"{e.metric}: {e.strongest_baseline}" for e in evaluations)),
        "verdict_metrics": dg.MetadataValue.json(list(VERDICT_METRICS)),
    }


def _confusion_figure(matrix: list[list[int]], title: str):
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(matrix), 0.8 + 0.6 * len(matrix)))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8, color="black" if count < matrix.max() / 2 else "white")
    ax.set(xlabel="predicted cluster", ylabel="GMM cluster", title=title, xticks=range(len(matrix)), yticks=range(len(matrix)))
    return fig


@dg.asset(
    group_name="lens",
    deps=[lens_gmm, lens_group_features, LENS_CLEAN],
    kinds={"pytorch"},
    description="PatchTST classifier: GMM cluster from a group's first second; trained under torchrun (DDP), "
    "split by day, scored on held-out days next to majority and logistic-regression baselines.",
)
def lens_patchtst(context: dg.AssetExecutionContext, config: LensPatchTSTConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    gmm = GmmModel.load(gmm_path())
    data = load_classifier_data(warehouse, gmm, config.channels)
    masks, split_days = split_by_day(data.frame["day"].to_numpy(), config.val_fraction, config.test_fraction)
    labels = {split: data.labels[mask] for split, mask in masks.items()}
    check_clusters_trainable(labels, gmm.k)
    # Standardise each channel with training-day statistics only; the same numbers go into the checkpoint.
    train_inputs = data.inputs[masks["train"]]
    mean = train_inputs.mean(axis=(0, 1))
    std = train_inputs.std(axis=(0, 1)) + 1e-6
    inputs = {split: ((data.inputs[mask] - mean) / std).astype(np.float32) for split, mask in masks.items()}
    weights = class_weights(labels["train"], gmm.k)
    baselines = baseline_scores(inputs["train"], labels["train"], inputs["test"], labels["test"], gmm.k, config.seed)

    digest = hashlib.sha256(json.dumps({"gmm": gmm.version, "config": config.identity()}, sort_keys=True).encode())
    for split in ("train", "val", "test"):
        digest.update(inputs[split].tobytes())
        digest.update(labels[split].tobytes())
    run_dir = patchtst_dir() / "runs" / digest.hexdigest()[:16]
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = run_dir / "dataset.npz"
    np.savez(dataset, **{f"x_{s}": inputs[s] for s in inputs}, **{f"y_{s}": labels[s] for s in labels},
             class_weight=weights, input_mean=mean, input_std=std)
    (run_dir / "result.json").unlink(missing_ok=True)
    if (run_dir / "last.pt").exists():
        context.log.info("%s holds last.pt from an earlier run with the same data and config: resuming", run_dir)

    train_config = config.train_config(str(dataset), str(run_dir))
    invocation = launch_torchrun(context, "netassets.lens.train", train_config.to_args(), nproc=config.nproc or None)
    if not (run_dir / "result.json").exists():
        raise dg.Failure(f"training stopped before the end (max_steps={config.max_steps}); last.pt in {run_dir} "
                         "is kept: materialise again (with a larger or zero max_steps) to resume")
    result = json.loads((run_dir / "result.json").read_text())

    evaluations = held_out_evaluations(
        {"patchtst": {"accuracy": result["test_accuracy"], "macro_f1": result["test_macro_f1"]}, **baselines},
        rows=int(masks["test"].sum()), test_days=split_days["test"])
    refusal = refusal_of(evaluations)
    if refusal:
        context.log.warning("lens_patchtst will not be promoted: %s", refusal)
    candidate_path().write_text(json.dumps({
        "run_id": context.run_id, "run_dir": str(run_dir), "checkpoint": str(run_dir / "best.pt"),
        "gmm_version": gmm.version, "channels": config.channels, "split_days": split_days,
        "evaluations": [e.to_dict() for e in evaluations],
    }, indent=1))
    pipes_metadata = invocation.get_materialize_result().metadata
    return dg.MaterializeResult(
        metadata={
            **pipes_metadata,
            **evaluation_metadata(evaluations),
            "test_confusion_matrix": figure_metadata(
                _confusion_figure(result["test_confusion"], f"held-out days {', '.join(split_days['test'])}"),
                save_to=run_dir / "confusion.png"),
            "history": table_markdown(result["history"]),
            "best_epoch": result["best_epoch"],
            f"best_{config.monitor_metric}": result["best_monitored"],
            "split_days": dg.MetadataValue.json(split_days),
            "groups_per_split": dg.MetadataValue.json({s: int(m.sum()) for s, m in masks.items()}),
            "class_weight": dg.MetadataValue.json([round(float(w), 4) for w in weights]),
            "channels": dg.MetadataValue.json(list(CHANNEL_COLUMNS[config.channels])),
            "gmm_version": gmm.version,
            "world_size": result["world_size"],
            "train_samples_per_s": float(np.mean([r["samples_per_s"] for r in result["history"]])),
            "checkpoint": dg.MetadataValue.path(str(run_dir / "best.pt")),
        }
    )


@dg.asset(
    group_name="lens",
    deps=[lens_patchtst],
    kinds={"pytorch"},
    description="The PatchTST checkpoint in production: copied only when the candidate beats its strongest baseline "
    "on the held-out days on macro-F1 and accuracy; otherwise the run fails and says why.",
)
def lens_patchtst_production(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    if not candidate_path().is_file():
        raise FileNotFoundError(f"no candidate at {candidate_path()}: materialise lens_patchtst first")
    candidate = json.loads(candidate_path().read_text())
    # The blocking check stops this asset in the run that trained the candidate; a later run
    # of this asset alone must not promote a candidate that failed it. A candidate written
    # before evaluations were recorded has none, and is refused.
    evaluations = [Evaluation.from_dict(e) for e in candidate.get("evaluations", [])] or [None]
    for evaluation in evaluations:
        refuse_unless_promotable(evaluation, candidate_run=candidate["run_id"])
    target = patchtst_dir() / "production"
    copy_file(Path(candidate["checkpoint"]), target / "model.pt")
    write_json(target / "model.json", candidate)
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(target / "model.pt")), "from_run": candidate["run_id"],
                  **evaluation_metadata(evaluations)}
    )
