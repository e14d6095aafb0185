"""LENS ingestion: hour CSVs -> lens_raw_irtt -> lens_clean_groups (15 s groups on a 10 ms grid)."""


import datetime as dt

import dagster as dg
import duckdb
from pydantic import Field, field_validator

from netassets.core.partitions import context_partition
from netassets.core.settings import landing_dir
from netassets.core.sql import load_sql
from netassets.core.warehouse import POOL, DuckDBWarehouse, EmptyPartitionError
from netassets.lens.partitions import REGION, lens_partitions
from netassets.lens.raw import LensInputError, day_files, rejected_lines

GROUP_POINTS = 1500
# More than this share of a day's rows rounding outside the day means the files are filed
# under the wrong date, not that a few packets straddle midnight.
MAX_OUTSIDE_DAY_SHARE = 0.01


@dg.asset(
    group_name="lens",
    partitions_def=lens_partitions,
    pool=POOL,
    kinds={"duckdb"},
    description="LENS irtt hour files of one day x region, loaded as read into DuckDB.",
)
def lens_raw_irtt(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse) -> dg.MaterializeResult:
    partition = context_partition(context, REGION)
    root = landing_dir("lens")
    files = day_files(root, partition.other, partition.day)
    if not files.present:
        raise EmptyPartitionError(
            f"lens_raw_irtt {partition.key}: no hour files with data under {root / partition.other / partition.day.isoformat()}"
            f" (missing hours {files.missing_hours}, empty files {[p.name for p in files.empty]})"
        )
    if files.missing_hours:
        context.log.warning("%s: missing hour files %s", partition.key, files.missing_hours)

    day_start_tick = int(dt.datetime.combine(partition.day, dt.time(), dt.timezone.utc).timestamp()) * 100
    stats: dict[str, int] = {}

    def inspect(conn: duckdb.DuckDBPyConnection) -> None:
        truncated, errors = rejected_lines(conn)
        if errors:
            more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
            raise LensInputError(errors[0] + more)
        for message in truncated:
            context.log.warning("dropping truncated last line: %s", message)
        stats["truncated_lines"] = len(truncated)
        stats["rows_read"] = conn.execute("SELECT count(*) FROM _netassets_staged").fetchone()[0]
        outside = conn.execute(
            """
            DELETE FROM _netassets_staged
            WHERE NOT CAST(round_even("timestamp" / 1e7, 0) AS BIGINT) BETWEEN $start AND $start + 8639999
            RETURNING hour
            """,
            {"start": day_start_tick},
        ).fetchall()
        stats["rows_outside_day"] = len(outside)
        if stats["rows_read"] and len(outside) > MAX_OUTSIDE_DAY_SHARE * stats["rows_read"]:
            worst = max(set(h for (h,) in outside), key=[h for (h,) in outside].count)
            raise LensInputError(
                f"lens_raw_irtt {partition.key}: {len(outside)} of {stats['rows_read']} rows have timestamps outside "
                f"{partition.day} (most in hour file {worst:02d}); are the files filed under the wrong date?"
            )

    with warehouse.connect() as conn:
        rows = warehouse.replace_partition(
            "lens_raw_irtt",
            {"day": partition.day, "region": partition.other},
            select_sql=load_sql("lens", "lens_raw_irtt"),
            params={"files": [str(p) for p in files.present], "day": partition.day, "region": partition.other},
            conn=conn,
            before_commit=inspect,
        )
        lost, duplicates = conn.execute(
            """
            SELECT avg(CASE WHEN rtt <= 0 THEN 1.0 ELSE 0.0 END), count(*) - count(DISTINCT "timestamp")
            FROM lens_raw_irtt WHERE day = $day AND region = $region
            """,
            {"day": partition.day, "region": partition.other},
        ).fetchone()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "lost_packet_share": float(lost),
            "hour_files": len(files.present),
            "missing_hours": dg.MetadataValue.json(files.missing_hours),
            "empty_files": dg.MetadataValue.json([p.name for p in files.empty]),
            "truncated_lines_dropped": stats["truncated_lines"],
            "rows_outside_day_dropped": stats["rows_outside_day"],
            "duplicate_timestamps": int(duplicates),
            "source": dg.MetadataValue.path(str(root / partition.other / partition.day.isoformat())),
        }
    )


class LensCleanConfig(dg.Config):
    min_samples: int = Field(
        default=1300, description="keep groups with MORE than this many observed points of 1500 (seed: 1300)"
    )

    @field_validator("min_samples")
    @classmethod
    def _in_range(cls, value: int) -> int:
        if not 0 <= value < GROUP_POINTS:
            raise ValueError(f"min_samples must be in [0, {GROUP_POINTS}), got {value}")
        return value


@dg.asset(
    group_name="lens",
    partitions_def=lens_partitions,
    deps=[lens_raw_irtt],
    pool=POOL,
    kinds={"duckdb"},
    description="Seed-faithful cleaning: one row per kept 15 s group, token (-1) and nearest fills on a 1500-point grid.",
)
def lens_clean_groups(
    context: dg.AssetExecutionContext, config: LensCleanConfig, warehouse: DuckDBWarehouse
) -> dg.MaterializeResult:
    partition = context_partition(context, REGION)
    params = {"day": partition.day, "region": partition.other, "min_samples": config.min_samples}
    with warehouse.connect() as conn:
        try:
            rows = warehouse.replace_partition(
                "lens_clean_groups",
                {"day": partition.day, "region": partition.other},
                select_sql=load_sql("lens", "lens_clean_groups"),
                params=params,
                conn=conn,
            )
        except EmptyPartitionError as exc:
            raise EmptyPartitionError(
                f"{exc}: no 15 s group of {partition.key} has more than {config.min_samples} observed points"
                " (or lens_raw_irtt holds nothing for it)"
            ) from None
        (mean_fill,) = conn.execute(
            "SELECT avg(1 - n_observed / 1500.0) FROM lens_clean_groups WHERE day = $day AND region = $region",
            {"day": partition.day, "region": partition.other},
        ).fetchone()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "mean_fill_share": float(mean_fill),
            "min_samples": config.min_samples,
        }
    )
