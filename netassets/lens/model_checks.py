"""Checks on the LENS models: finite features, a cluster for every group, and a classifier
that beats its strongest baseline on held-out days before its checkpoint reaches production."""

import json

import dagster as dg
import pandas as pd

from netassets.core.evaluation import Evaluation
from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.partitions import parse_partition_key
from netassets.core.warehouse import DuckDBWarehouse
from netassets.lens.checks import RTT_MAX_MS
from netassets.lens.features import AUTOCORR_LAGS, FEATURES
from netassets.lens.model_assets import (
    VERDICT_METRICS,
    candidate_path,
    evaluation_metadata,
    lens_clusters,
    lens_group_features,
    lens_patchtst,
    refusal_of,
)
from netassets.lens.partitions import REGION, lens_partitions

# |autocorrelation| with the (n - lag) normaliser is at most n / (n - lag) = 1500 / 1495.
AUTOCORR_BOUND = 1.01


def _load_features(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    partition = parse_partition_key(partition_key, REGION)
    return warehouse.query(
        f"SELECT group_id, {', '.join(FEATURES)} FROM lens_group_features WHERE day = $day AND region = $region",
        {"day": partition.day, "region": partition.other},
    ).to_pandas()


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


lens_group_features_gx = gx_partition_check(
    asset=lens_group_features,
    name="lens_group_features_finite",
    description="Every feature finite; RTT statistics in (0, 10000) ms, autocorrelations in [-1.01, 1.01], shares in [0, 1].",
    partitions_def=lens_partitions,
    load=_load_features,
    expectations=_feature_expectations,
)


def _load_assignment(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    partition = parse_partition_key(partition_key, REGION)
    return warehouse.query(
        """
        SELECT g.group_id, c.cluster, c.probability
        FROM lens_clean_groups g
        LEFT JOIN lens_clusters c USING (day, region, group_id)
        WHERE g.day = $day AND g.region = $region
        """,
        {"day": partition.day, "region": partition.other},
    ).to_pandas()


def _assignment_expectations(frame: pd.DataFrame) -> list:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="cluster"),
        gxe.ExpectColumnValuesToBeBetween(column="cluster", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="probability", min_value=0, max_value=1),
    ]


lens_clusters_gx = gx_partition_check(
    asset=lens_clusters,
    name="lens_clusters_every_group",
    description="Every group of lens_clean_groups in the partition has a cluster and a probability in [0, 1].",
    partitions_def=lens_partitions,
    load=_load_assignment,
    expectations=_assignment_expectations,
    additional_deps=["lens_clean_groups"],
)


@dg.asset_check(
    asset=lens_patchtst,
    name="lens_patchtst_beats_strongest_baseline",
    blocking=True,
    description=f"Beats the strongest baseline (majority class, logistic regression) on the held-out days on "
    f"{' and '.join(VERDICT_METRICS)}; fails with ERROR severity and so blocks the copy to production otherwise.",
)
def lens_patchtst_beats_strongest_baseline(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    # ERROR, not Evaluation.check_result's WARN: only an ERROR failure of a blocking check stops
    # lens_patchtst_production in the same run.
    if not candidate_path().is_file():
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description=f"no evaluation at {candidate_path()}")
    candidate = json.loads(candidate_path().read_text())
    evaluations = [Evaluation.from_dict(e) for e in candidate.get("evaluations", [])]
    if not evaluations:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description=f"the candidate from run {candidate['run_id']} recorded no evaluation")
    refusal = refusal_of(evaluations)
    return dg.AssetCheckResult(
        passed=refusal is None,
        severity=dg.AssetCheckSeverity.ERROR,
        description=refusal or "; ".join(e.verdict for e in evaluations),
        metadata={
            **evaluation_metadata(evaluations),
            "test_days": dg.MetadataValue.json(candidate["split_days"]["test"]),
            "evaluated_in_run": candidate["run_id"],
            "checkpoint": dg.MetadataValue.path(candidate["checkpoint"]),
        },
    )
