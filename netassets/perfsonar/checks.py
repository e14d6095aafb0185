"""Great Expectations suites on the perfSONAR tables, run per partition and blocking downstream."""

import pandas as pd

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.partitions import parse_partition_key
from netassets.core.warehouse import DuckDBWarehouse
from netassets.perfsonar.assets import perfsonar_anomaly_scores, perfsonar_packet_loss
from netassets.perfsonar.partitions import SOURCE, perfsonar_partitions

SCORE_STATUSES = ["scored", "insufficient_reference", "insufficient_subject"]


def _partition_frame(warehouse: DuckDBWarehouse, partition_key: str, sql: str) -> pd.DataFrame:
    partition = parse_partition_key(partition_key, SOURCE)
    return warehouse.query(sql, {"day": partition.day, "source": partition.other}).to_pandas()


def _load_loss(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    return _partition_frame(warehouse, partition_key, """
        SELECT minute, destination, packet_loss, documents,
               datediff('minute', CAST(day AS TIMESTAMP), minute) AS minute_of_day
        FROM perfsonar_packet_loss WHERE day = $day AND source = $source""")


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
    # Unscored hours hold NULLs: score_matches_status checks that, and the range expectations read
    # them as 0 (core's GX summary cannot format the result of an all-NULL column, e.g. a day
    # on which no hour had enough reference).
    return _partition_frame(warehouse, partition_key, """
        SELECT hour, status, (score IS NOT NULL) = (status = 'scored') AS score_matches_status,
               coalesce(accuracy, 0) AS accuracy, coalesce(chance, 0) AS chance, coalesce(score, 0) AS score
        FROM perfsonar_anomaly_scores WHERE day = $day AND source = $source""")


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
    name="perfsonar_packet_loss_gx",
    description="Loss in [0, 1], one row per minute x destination, all minutes inside the day.",
    partitions_def=perfsonar_partitions,
    load=_load_loss,
    expectations=_loss_expectations,
)

perfsonar_anomaly_scores_gx = gx_partition_check(
    asset=perfsonar_anomaly_scores,
    name="perfsonar_anomaly_scores_gx",
    description="24 distinct hours, known statuses, a score exactly on scored hours, accuracies in [0, 1],"
    " scaled accuracy at most 1.",
    partitions_def=perfsonar_partitions,
    load=_load_scores,
    expectations=_score_expectations,
)
