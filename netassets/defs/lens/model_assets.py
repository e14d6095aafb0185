"""LENS model assets: the global GMM, the PatchTST classifier and its production copy.

lens_gmm and lens_patchtst are unpartitioned and read what they need from DuckDB;
lens_patchtst trains in a ``torchrun`` child launched through dagster-pipes and is judged by
``netassets.core.evaluation`` on held-out days, next to the majority class and a logistic
regression on the same test groups, on macro-F1 and on accuracy (``VERDICT_METRICS``).
lens_patchtst_production promotes the candidate through the model store only when it beats the
strongest baseline on both. The work is in ``netassets.lens.models``.
"""


from typing import Any, Sequence

import dagster as dg
from pydantic import Field, field_validator, model_validator

from netassets.core.evaluation import Evaluation
from netassets.core.metadata import shown
from netassets.core.plots import figure_metadata, table_markdown
from netassets.core.warehouse import DuckDBWarehouse
from netassets.defs.lens.assets import LENS_CLEAN, LENS_FEATURES, LENS_GMM
from netassets.lens.clustering import SelectionSettings
from netassets.lens.config import TrainConfig
from netassets.lens.features import FEATURES
from netassets.lens.patchtst import CHANNEL_COLUMNS, channel_columns

LENS_PATCHTST = dg.AssetKey("lens_patchtst")
LENS_PATCHTST_PRODUCTION = dg.AssetKey("lens_patchtst_production")


# ---------------------------------------------------------------------------------- GMM


class LensGmmConfig(dg.Config):
    k_min: int = Field(default=6, ge=2, description="smallest number of clusters tried")
    k_max: int = Field(default=15, ge=2, description="largest number of clusters tried")
    restarts: int = Field(default=5, ge=1, description="k-means++ initialisations per k; the best likelihood is kept")
    max_iter: int = Field(default=300, ge=1, description="EM iterations per restart")
    min_cluster_share: float = Field(default=0.01, ge=0, lt=1,
                                     description="reject a k whose smallest cluster is under this share")
    silhouette_sample: int = Field(default=5000, description="groups sampled to compute the silhouette (>= 2)")
    days_per_region: int = Field(default=1, description="random days per region in the training sample (>= 1)")
    seed: int = Field(default=0, description="seeds the day sample, the k-means++ starts and the silhouette sample")
    features: list[str] = Field(default=list(FEATURES), description="candidate features (columns of lens_group_features)")
    feature_selection: str = Field(default="fixed",
                                   description="'fixed': use `features`; 'tree': the seed's decision-tree ranking")
    tree_top_n: int = Field(default=7, description="features kept by the 'tree' selection, in 1..len(features)")

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


@dg.asset(
    group_name="lens",
    deps=[LENS_FEATURES],
    kinds={"sklearn", "json"},
    description="Global diagonal GMM over one random day per region; k by silhouette; parameters saved as JSON "
                "in the lens/gmm model store (the latest finished run is the live GMM).",
)
def lens_gmm(context: dg.AssetExecutionContext, config: LensGmmConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    from netassets.lens import models

    fit = models.fit_global_gmm(warehouse, config.settings(), config.features, config.feature_selection,
                                config.tree_top_n, config.days_per_region, context.log)
    path = models.save_gmm(fit, context.run_id, config.model_dump())
    metadata = {
        "k": fit.model.k,
        "gmm_version": fit.model.version,
        "features": dg.MetadataValue.json(fit.names),
        "silhouette_per_k": table_markdown(fit.rows),
        "cluster_sizes": dg.MetadataValue.json({str(i): int(n) for i, n in enumerate(fit.sizes)}),
        "mean_assignment_probability": float(fit.probability.mean()),
        "trained_on_partitions": dg.MetadataValue.json(fit.keys),
        "training_groups": len(fit.frame),
        **figure_metadata("plot", models.gmm_figure(fit), save_to=path.with_suffix(".png")),
        "path": dg.MetadataValue.path(str(path)),
    }
    if fit.ranking is not None:
        metadata["tree_importance"] = table_markdown(fit.ranking)
    if fit.ari is not None:
        metadata["ari_vs_generator_regimes"] = fit.ari
    models.finish_gmm(context.run_id, fit)
    return dg.MaterializeResult(metadata=shown(metadata), data_version=dg.DataVersion(fit.model.version))


# ---------------------------------------------------------------------------------- PatchTST


class LensPatchTSTConfig(TrainConfig, dg.Config):
    """The training recipe (``netassets.lens.config.TrainConfig``) plus what only the asset uses."""

    channels: str = Field(default="nearest", description="input channel(s): 'token' (-1 for gaps), 'nearest', or 'both'")
    nproc: int = Field(default=0, ge=0, description="torchrun processes; 0: one per GPU (1 on CPU)")
    val_fraction: float = Field(default=0.15, gt=0, lt=1,
                                description="share of days (the latest before test) for validation")
    test_fraction: float = Field(default=0.15, gt=0, lt=1, description="share of days (the latest) held out for test")

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: str) -> str:
        channel_columns(value)
        return value

    def identity(self) -> dict:
        """What makes a run the same run: budget and parallelism knobs may change on resume."""
        return self.model_dump(exclude={"epochs", "max_steps", "nproc", "num_workers", "eval_interval", "save_interval"})


def evaluation_metadata(evaluations: Sequence[Evaluation]) -> dict[str, Any]:
    """The side-by-side test table (every scorer, both metrics) and a verdict line per metric."""
    from netassets.core.evaluation import promotion_refusal

    more_verdicts = "".join(f"\n\n**Verdict on {e.metric}:** {e.verdict}" for e in evaluations[1:])
    refused = any(promotion_refusal(e) for e in evaluations)
    return {
        **evaluations[0].metadata(),
        "evaluation": dg.MetadataValue.md(evaluations[0].markdown() + more_verdicts),
        "verdict": dg.MetadataValue.text("; ".join(e.verdict for e in evaluations)),
        "beats_strongest_baseline": dg.MetadataValue.bool(not refused),
        "strongest_baseline": dg.MetadataValue.text(", ".join(f"{e.metric}: {e.strongest_baseline}" for e in evaluations)),
        "verdict_metrics": dg.MetadataValue.json([e.metric for e in evaluations]),
    }


@dg.asset(
    group_name="lens",
    deps=[LENS_GMM, LENS_FEATURES, LENS_CLEAN],
    kinds={"pytorch", "safetensors"},
    description="PatchTST classifier: GMM cluster from a group's first second; trained under torchrun (DDP), "
    "split by day, scored on held-out days next to majority and logistic-regression baselines; its weights "
    "become the lens/patchtst model store's candidate.",
)
def lens_patchtst(context: dg.AssetExecutionContext, config: LensPatchTSTConfig, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    import numpy as np

    from netassets.core.torchrun import launch_torchrun
    from netassets.lens import models

    recipe = TrainConfig.of(config)
    if recipe.resume_from:  # refused unless inside the model's folder; the worker gets the resolved path
        recipe = recipe.model_copy(update={"resume_from": str(models.patchtst_store().inside(recipe.resume_from,
                                                                                              "resume_from"))})
    run = models.prepare_patchtst_run(warehouse, config.channels, config.val_fraction, config.test_fraction,
                                      config.seed, config.identity())
    if run.resumes:
        context.log.info("%s holds last.pt from an earlier run with the same data and config: resuming", run.folder)
    recipe.write(run.config_file)
    invocation = launch_torchrun(context, "netassets.lens.train", run.worker_args(), nproc=config.nproc or None)
    result = run.result()
    if result is None:
        raise dg.Failure(
            description=f"training stopped before the end (max_steps={config.max_steps}); last.pt in {run.folder} "
                        "is kept: materialise again (with a larger or zero max_steps) to resume",
            metadata={"run_folder": dg.MetadataValue.path(str(run.folder)), "max_steps": config.max_steps},
        )
    candidate = models.propose_patchtst(run, result, config.channels, context.run_id)
    refusal = models.refusal_of(candidate.evaluations)
    if refusal:
        context.log.warning("lens_patchtst will not be promoted: %s", refusal)
    return dg.MaterializeResult(
        metadata=shown({
            **invocation.get_materialize_result().metadata,
            **evaluation_metadata(candidate.evaluations),
            **figure_metadata(
                "test_confusion_matrix",
                models.confusion_figure(result["test_confusion"], f"held-out days {', '.join(run.split_days['test'])}"),
                save_to=run.folder / "confusion.png"),
            "history": table_markdown(result["history"]),
            "best_epoch": result["best_epoch"],
            f"best_{config.monitor_metric}": result["best_monitored"],
            "split_days": dg.MetadataValue.json(run.split_days),
            "groups_per_split": dg.MetadataValue.json({s: int(m.sum()) for s, m in run.masks.items()}),
            "class_weight": dg.MetadataValue.json([float(w) for w in run.weights]),
            "channels": dg.MetadataValue.json(list(CHANNEL_COLUMNS[config.channels])),
            "gmm_version": run.gmm.version,
            "world_size": result["world_size"],
            "train_samples_per_s": float(np.mean([r["samples_per_s"] for r in result["history"]])),
            "candidate_run": candidate.version.run_id,
            "run_folder": dg.MetadataValue.path(str(run.folder)),
            "weights": dg.MetadataValue.path(str(candidate.version.path("model"))),
        })
    )


@dg.asset(
    group_name="lens",
    deps=[LENS_PATCHTST],
    kinds={"pytorch", "safetensors"},
    description="The PatchTST weights in production: the lens/patchtst candidate promoted only when it beats its "
    "strongest baseline on the held-out days on macro-F1 and accuracy and its weights load; otherwise the run "
    "fails, says why, and production keeps the previous version.",
)
def lens_patchtst_production(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from netassets.lens.models import patchtst_store, weights_load

    live = patchtst_store().promote(gates=[weights_load])
    metadata: dict[str, Any] = {"path": dg.MetadataValue.path(str(live.path("model"))), "from_run": live.run_id}
    if live.evaluations:
        metadata.update(evaluation_metadata(live.evaluations))
    return dg.MaterializeResult(metadata=shown(metadata))
