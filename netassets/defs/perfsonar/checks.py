"""Great Expectations suites on the perfSONAR tables, run per partition and blocking downstream."""

import pandas as pd

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.partitions import parse_partition_key
from netassets.core.warehouse import DuckDBWarehouse
from netassets.defs.perfsonar.assets import perfsonar_anomaly_scores, perfsonar_packet_loss
from netassets.defs.perfsonar.pipeline import PIPELINE
from netassets.perfsonar.tables import loss_for_validation, scores_for_validation

SCORE_STATUSES = ["scored", "insufficient_reference", "insufficient_subject"]


def _load_loss(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    return loss_for_validation(warehouse, parse_partition_key(partition_key, PIPELINE.dimension))


def _loss_expectations(frame: pd.DataFrame) -> list:
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("minute", "destination", "packet_loss")),
        gxe.ExpectColumnValuesToBeBetween(column="packet_loss", min_value=0, max_value=1),
        # Every row belongs to the partition's day: the query window and the minute floor agree.
        gxe.ExpectColumnValuesToBeBetween(column="minute_of_day", min_value=0, max_value=1439),
        # The seed's matrix has one cell per minute x destination: duplicates were collapsed.
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["minute", "destination"]),
        gxe.ExpectColumnValuesToBeBetween(column="documents", min_value=1),
    ]


def _load_scores(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    return scores_for_validation(warehouse, parse_partition_key(partition_key, PIPELINE.dimension))


def _score_expectations(frame: pd.DataFrame) -> list:
    return [
        gxe.ExpectTableRowCountToEqual(value=24),
        gxe.ExpectColumnValuesToBeUnique(column="hour"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=SCORE_STATUSES),
        gxe.ExpectColumnValuesToBeInSet(column="score_matches_status", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="accuracy", min_value=0, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="chance", min_value=0, max_value=1, strict_max=True),
        # Scaled accuracy tops out at 1 (a perfect held-out split); it is negative below chance.
        gxe.ExpectColumnValuesToBeBetween(column="score", max_value=1),
    ]


perfsonar_packet_loss_gx = gx_partition_check(
    asset=perfsonar_packet_loss,
    name="gx_expectations",
    description="Loss in [0, 1], one row per minute x destination, all minutes inside the day.",
    partitions_def=PIPELINE.partitions,
    load=_load_loss,
    expectations=_loss_expectations,
)

perfsonar_anomaly_scores_gx = gx_partition_check(
    asset=perfsonar_anomaly_scores,
    name="gx_expectations",
    description="24 distinct hours, known statuses, a score exactly on scored hours, accuracies in [0, 1],"
    " scaled accuracy (seed classifier) at most 1.",
    partitions_def=PIPELINE.partitions,
    load=_load_scores,
    expectations=_score_expectations,
)
