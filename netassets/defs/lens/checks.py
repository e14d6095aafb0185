"""LENS asset checks: Great Expectations suites on the features and cluster tables (per partition,
blocking downstream; the raw and clean suites run inside lens_ingest's step, see assets.py), the
GMM's cluster quality, the classifier's verdict against its baselines, the production weights."""


import pandas as pd
import dagster as dg

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.metadata import shown
from netassets.defs.lens.assets import LENS_CLEAN, LENS_CLUSTERS, LENS_FEATURES, LENS_GMM
from netassets.defs.lens.model_assets import LENS_PATCHTST, LENS_PATCHTST_PRODUCTION, evaluation_metadata
from netassets.defs.lens.pipeline import PIPELINE
from netassets.lens import quality
from netassets.lens.features import AUTOCORR_LAGS, FEATURES
from netassets.lens.models import VERDICT_METRICS
from netassets.lens.raw import RTT_MAX_MS

# |autocorrelation| with the (n - lag) normaliser is at most n / (n - lag) = 1500 / 1495.
AUTOCORR_BOUND = 1.01


def _feature_expectations(frame: pd.DataFrame) -> list:
    between = gxe.ExpectColumnValuesToBeBetween
    # NaN reads as null in pandas, so not-null is the finiteness test.
    expectations = [gxe.ExpectTableRowCountToBeBetween(min_value=1),
                    gxe.ExpectColumnValuesToBeUnique(column="group_id")]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=name) for name in FEATURES]
    expectations += [between(column=name, min_value=0, max_value=RTT_MAX_MS, strict_min=True)
                     for name in ("q05", "q125", "mean", "trimmed_mean_5")]
    expectations += [between(column=f"autocorr_{lag}", min_value=-AUTOCORR_BOUND, max_value=AUTOCORR_BOUND)
                     for lag in AUTOCORR_LAGS]
    expectations += [between(column="std", min_value=0, max_value=RTT_MAX_MS),
                     between(column="missing_share", min_value=0, max_value=1)]
    return expectations


def _assignment_expectations(frame: pd.DataFrame) -> list:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="cluster"),
        gxe.ExpectColumnValuesToBeBetween(column="cluster", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="probability", min_value=0, max_value=1),
    ]


lens_group_features_finite = gx_partition_check(
    asset=LENS_FEATURES,
    name="finite_features",
    description="Every feature finite; RTT statistics in (0, 10000) ms, autocorrelations in [-1.01, 1.01], shares in [0, 1].",
    partitions_def=PIPELINE.partitions,
    load=quality.group_features,
    expectations=_feature_expectations,
)

lens_clusters_every_group = gx_partition_check(
    asset=LENS_CLUSTERS,
    name="every_group_clustered",
    description="Every group of lens_clean_groups in the partition has a cluster and a probability in [0, 1].",
    partitions_def=PIPELINE.partitions,
    load=quality.group_assignment,
    expectations=_assignment_expectations,
    additional_deps=[LENS_CLEAN],
)


@dg.asset_check(
    asset=LENS_GMM,
    name="separates_regimes",
    description="The live GMM's k was a valid choice (no near-empty cluster) with a positive silhouette; WARN otherwise.",
)
def lens_gmm_separates_regimes(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    from netassets.lens.models import current_gmm, gmm_path, gmm_problems

    model = current_gmm()
    problems = gmm_problems(model)
    chosen = next((row for row in model.info.get("selection", []) if row["k"] == model.k), {})
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(problems) or f"k={model.k}, silhouette {chosen.get('silhouette', float('nan')):.3g}",
        metadata=shown({"k": model.k, "gmm_version": model.version, "path": dg.MetadataValue.path(str(gmm_path())),
                  "silhouette": float(chosen.get("silhouette", float("nan"))),
                  "smallest_cluster": int(chosen.get("smallest_cluster", 0))}),
    )


@dg.asset_check(
    asset=LENS_PATCHTST,
    name="beats_strongest_baseline",
    description=f"Beats the strongest baseline (majority class, logistic regression) on the held-out days on "
    f"{' and '.join(VERDICT_METRICS)}; WARN when it loses (lens_patchtst_production then refuses the candidate).",
)
def lens_patchtst_beats_strongest_baseline(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    from netassets.lens.models import patchtst_store, refusal_of

    try:
        candidate = patchtst_store().candidate()
    except FileNotFoundError as missing:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, description=str(missing))
    evaluations = list(candidate.evaluations)
    if not evaluations:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   description=f"the candidate from run {candidate.run_id} recorded no evaluation")
    refusal = refusal_of(evaluations)
    # The verdict of the first metric the model loses on (or of the first, when it wins on all).
    deciding = next((e for e in evaluations if not e.beats_strongest_baseline), evaluations[0]).check_result()
    return dg.AssetCheckResult(
        passed=refusal is None,
        severity=deciding.severity,
        description=refusal or "; ".join(e.verdict for e in evaluations),
        metadata={
            **evaluation_metadata(evaluations),
            "test_days": dg.MetadataValue.json(candidate.info["split_days"]["test"]),
            "evaluated_in_run": candidate.info.get("dagster_run", ""),
            "candidate_run": candidate.run_id,
            "weights": dg.MetadataValue.path(str(candidate.path("model"))),
        },
    )


@dg.asset_check(
    asset=LENS_PATCHTST_PRODUCTION,
    name="weights_load",
    description="The production weights rebuild the PatchTST classifier they were saved from (strict load).",
)
def lens_patchtst_production_weights_load(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    from netassets.lens.models import patchtst_store, weights_load

    live = patchtst_store().production()
    if live is None:
        return dg.AssetCheckResult(passed=False, description="no production version yet: materialise "
                                                             "lens_patchtst_production after a winning lens_patchtst")
    problems = weights_load(live)
    return dg.AssetCheckResult(passed=not problems, description="; ".join(problems) or f"run {live.run_id} loads",
                               metadata={"from_run": live.run_id,
                                         "path": dg.MetadataValue.path(str(live.path("model")))})
