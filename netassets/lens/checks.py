"""Great Expectations suites on the LENS tables, run per partition and blocking downstream."""

from __future__ import annotations

import pandas as pd

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.partitions import parse_partition_key
from netassets.core.warehouse import DuckDBWarehouse
from netassets.lens.assets import GROUP_POINTS, LENS_CLEAN, LENS_RAW
from netassets.lens.partitions import REGION, lens_partitions
from netassets.lens.raw import RTT_MAX_MS




def _partition_frame(warehouse: DuckDBWarehouse, partition_key: str, sql: str) -> pd.DataFrame:
    partition = parse_partition_key(partition_key, REGION)
    return warehouse.query(sql, {"day": partition.day, "region": partition.other}).to_pandas()


def _load_raw(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
    return _partition_frame(
        warehouse,
        partition_key,
        'SELECT "timestamp", rtt, uplink, downlink FROM lens_raw_irtt WHERE day = $day AND region = $region',
    )


def _raw_expectations(frame: pd.DataFrame) -> list:
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=["timestamp", "rtt", "uplink", "downlink"], exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="timestamp"),
        gxe.ExpectColumnValuesToNotBeNull(column="rtt"),
        # rtt is -1 (lost), 0 (lost, as some captures write it) or a plausible latency.
        gxe.ExpectColumnValuesToBeBetween(
            column="rtt", min_value=0, max_value=RTT_MAX_MS, strict_max=True,
            row_condition="rtt != -1", condition_parser="pandas",
        ),
        # A handful of duplicated stamps is tolerated (cleaning keeps the first); a file loaded twice is not.
        gxe.ExpectColumnValuesToBeUnique(column="timestamp", mostly=0.999),
    ]


def _load_clean(warehouse: DuckDBWarehouse, partition_key: str) -> pd.DataFrame:
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


def _clean_expectations(frame: pd.DataFrame) -> list:
    between = gxe.ExpectColumnValuesToBeBetween
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="group_id"),
        gxe.ExpectColumnValuesToBeUnique(column="group_start"),
        between(column="token_points", min_value=GROUP_POINTS, max_value=GROUP_POINTS),
        between(column="nearest_points", min_value=GROUP_POINTS, max_value=GROUP_POINTS),
        between(column="fill_share", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="max_fill_share", column_B="fill_share", or_equal=True
        ),
        between(column="token_min_observed", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
        between(column="token_max", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
        between(column="nearest_min", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
        between(column="nearest_max", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
    ]


lens_raw_irtt_gx = gx_partition_check(
    asset=LENS_RAW,
    name="lens_raw_irtt_gx",
    description="Schema; rtt is -1 or 0 <= rtt < 10000 ms (0 and -1: lost); timestamps unique (99.9 %); partition non-empty.",
    partitions_def=lens_partitions,
    load=_load_raw,
    expectations=_raw_expectations,
)

lens_clean_groups_gx = gx_partition_check(
    asset=LENS_CLEAN,
    name="lens_clean_groups_gx",
    description="Every group has exactly 1500 points in both fills; fill share within the threshold; values plausible; non-empty.",
    partitions_def=lens_partitions,
    load=_load_clean,
    expectations=_clean_expectations,
)
