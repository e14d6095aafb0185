"""What each LENS data-quality check validates: the suites that lens_ingest evaluates in its own
step, on aggregates, and the rows the separate check steps load (their expectations are declared
with the checks in ``netassets.defs.lens.checks``)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from netassets.core.expectations import gxe
from netassets.core.partitions import parse_partition_key
from netassets.core.warehouse import DuckDBWarehouse
from netassets.lens.cleaning import GROUP_POINTS
from netassets.lens.features import FEATURES
from netassets.lens.raw import RTT_MAX_MS

REGION = "region"


def _partition_frame(warehouse: DuckDBWarehouse, partition_key: str, sql: str) -> pd.DataFrame:
    partition = parse_partition_key(partition_key, REGION)
    return warehouse.query(sql, {"day": partition.day, "region": partition.other}).to_pandas()


# A 10 ms capture writes 360 000 rows an hour; ten times that in one hour file is no capture
# (a file concatenated or copied twice), not a faster probe.
MAX_ROWS_PER_HOUR_FILE = 3_600_000


def raw_file_expectations() -> list:
    """lens_raw_irtt's suite, over its rows (one per hour file), on what reading does not
    guarantee: the reader already refuses a wrong schema, an empty field and a value outside
    {-1} and [0, 10000) ms, naming the line, so the suite does not re-check those 8.64 M values."""
    between = gxe.ExpectColumnValuesToBeBetween
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="hour"),
        between(column="rows", min_value=1, max_value=MAX_ROWS_PER_HOUR_FILE),
        # A handful of duplicated stamps is tolerated (cleaning keeps the first); a file loaded twice is not.
        between(column="unique_stamp_share", min_value=0.999, max_value=1),
        between(column="lost_share", min_value=0, max_value=1),
    ]


def raw_file_frame(statistics: pa.Table) -> pd.DataFrame:
    frame = statistics.select(["hour", "rows", "lost", "duplicate_stamps"]).to_pandas()
    frame["unique_stamp_share"] = 1 - frame["duplicate_stamps"] / frame["rows"]
    frame["lost_share"] = frame["lost"] / frame["rows"]
    return frame


def clean_group_expectations() -> list:
    """lens_clean_groups' suite, over per-group aggregates of the arrays the step wrote."""
    between = gxe.ExpectColumnValuesToBeBetween
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="group_id"),
        gxe.ExpectColumnValuesToBeUnique(column="group_start"),
        between(column="token_points", min_value=GROUP_POINTS, max_value=GROUP_POINTS),
        between(column="nearest_points", min_value=GROUP_POINTS, max_value=GROUP_POINTS),
        between(column="fill_share", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="max_fill_share", column_B="fill_share", or_equal=True),
        between(column="token_min_observed", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
        between(column="token_max", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
        between(column="nearest_min", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
        between(column="nearest_max", min_value=0, max_value=RTT_MAX_MS, strict_min=True, strict_max=True),
    ]


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
