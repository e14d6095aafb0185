"""The rows each LENS data-quality check validates, one partition at a time (the expectations
themselves are declared with the checks in ``netassets.defs.lens.checks``)."""

from __future__ import annotations

import pandas as pd

from netassets.core.partitions import parse_partition_key
from netassets.core.warehouse import DuckDBWarehouse
from netassets.lens.features import FEATURES

REGION = "region"


def _partition_frame(warehouse: DuckDBWarehouse, partition_key: str, sql: str) -> pd.DataFrame:
    partition = parse_partition_key(partition_key, REGION)
    return warehouse.query(sql, {"day": partition.day, "region": partition.other}).to_pandas()


def raw_rows(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    return _partition_frame(
        warehouse,
        partition_key,
        'SELECT "timestamp", rtt, uplink, downlink FROM lens_raw_irtt WHERE day = $day AND region = $region',
    )


def clean_group_summary(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    """One row per clean group: point counts, fill shares and the extremes of both fills."""
    return _partition_frame(
        warehouse,
        partition_key,
        """
        SELECT group_id, group_start, n_observed,
               len(rtt_token) AS token_points,
               len(rtt_nearest) AS nearest_points,
               1 - n_observed / 1500.0 AS fill_share,
               -- the share of filled points allowed by the threshold this partition was cleaned with
               1 - (min_samples + 1) / 1500.0 AS max_fill_share,
               list_min(list_filter(rtt_token, x -> x <> -1)) AS token_min_observed,
               list_max(rtt_token) AS token_max,
               list_min(rtt_nearest) AS nearest_min,
               list_max(rtt_nearest) AS nearest_max
        FROM lens_clean_groups WHERE day = $day AND region = $region
        """,
    )


def group_features(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    return _partition_frame(
        warehouse,
        partition_key,
        f"SELECT group_id, {', '.join(FEATURES)} FROM lens_group_features WHERE day = $day AND region = $region",
    )


def group_assignment(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    """Every clean group of the partition with its cluster (NULL where it has none)."""
    return _partition_frame(
        warehouse,
        partition_key,
        """
        SELECT g.group_id, c.cluster, c.probability
        FROM lens_clean_groups g
        LEFT JOIN lens_clusters c USING (day, region, group_id)
        WHERE g.day = $day AND g.region = $region
        """,
    )
