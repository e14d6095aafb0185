"""LENS ingestion, the work of the lens_ingest step: a day x region's hour CSVs -> lens_raw_irtt
-> lens_clean_groups (15 s groups on a 10 ms grid), both in one warehouse transaction, so that
after any failure (bad file, no group, a kill) both tables still describe the same files."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from netassets.core.automation import fingerprint
from netassets.core.files import changed_since, file_states
from netassets.core.partitions import DayPartition
from netassets.core.settings import landing_dir
from netassets.core.sql import load_sql
from netassets.core.warehouse import DuckDBWarehouse, EmptyPartitionError, PartitionWrite
from netassets.lens.cleaning import GROUP_POINTS, HALF_TICK_NS, clean_groups, clean_groups_table
from netassets.lens.raw import (
    VALID_VALUE_SQL,
    DayFiles,
    LensInputError,
    day_files,
    first_invalid_value,
    rejected_lines,
    stamps_within_day,
)

# More than this share of a day's rows rounding outside the day means the files are filed
# under the wrong date, not that a few packets straddle midnight.
MAX_OUTSIDE_DAY_SHARE = 0.01
# Packets straddling midnight land a few ms outside the day; rows further away, or more than
# this share, are worth a warning in the run log even when they are few enough to drop.
WARN_OUTSIDE_DAY_SHARE = 0.001
NEAR_MIDNIGHT_NS = 60 * 10**9


@dataclass
class RawLoad:
    """What loading a partition's hour files into lens_raw_irtt wrote and dropped."""

    write: PartitionWrite
    files: DayFiles
    source: Path
    lost: int
    truncated_lines: int
    rows_outside_day: int
    fingerprint: str = ""  # of the hour files read (and the empty ones the landing scan lists too)

    @property
    def lost_packet_share(self) -> float:
        return self.lost / self.write.rows


def load_raw(partition: DayPartition, warehouse: DuckDBWarehouse, conn: duckdb.DuckDBPyConnection,
             log: logging.Logger) -> RawLoad:
    """Replace the partition of lens_raw_irtt with its hour files, validated, on ``conn``."""
    root = landing_dir("lens")
    files = day_files(root, partition.other, partition.day)
    if not files.present:
        raise EmptyPartitionError(
            f"lens_raw_irtt {partition.key}: no hour files with data under {root / partition.other / partition.day.isoformat()}"
            f" (missing hours {files.missing_hours}, empty files {[p.name for p in files.empty]})"
        )
    if files.missing_hours:
        log.warning("%s: missing hour files %s", partition.key, files.missing_hours)
    states_before_reading = file_states(files.present)
    landing_fingerprint = fingerprint({**states_before_reading, **file_states(files.empty)})

    day_start_ns = int(dt.datetime.combine(partition.day, dt.time(), dt.timezone.utc).timestamp()) * 10**9
    day_end_ns = day_start_ns + 86_400 * 10**9
    stats: dict[str, int] = {}

    def inspect(conn: duckdb.DuckDBPyConnection) -> None:
        growing = changed_since(states_before_reading)
        if growing:  # a copy still in progress: what was read may be a prefix of the file
            raise LensInputError(f"lens_raw_irtt {partition.key}: {[str(p) for p in growing]} changed while it was read "
                                 "(still being written?); nothing was stored, retry once the files are complete")
        truncated, errors = rejected_lines(conn)
        if errors:
            more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
            raise LensInputError(errors[0] + more)
        for message in truncated:
            log.warning("dropping truncated last line: %s", message)
        stats["truncated_lines"] = len(truncated)
        partition_params = {"day": partition.day, "region": partition.other}
        stats["rows_read"], first_ns, last_ns, stats["lost"], invalid = conn.execute(
            f"""
            SELECT count(*), min("timestamp"), max("timestamp"), count(*) FILTER (WHERE rtt <= 0),
                   count(*) FILTER (WHERE "timestamp" IS NULL OR NOT coalesce({VALID_VALUE_SQL}, false))
            FROM lens_raw_irtt WHERE day = $day AND region = $region
            """,
            partition_params,
        ).fetchone()
        if invalid:
            raise LensInputError(f"{first_invalid_value(files.present)} ({invalid} such value(s) in {partition.key})")
        stats["rows_outside_day"] = 0
        # A stamp belongs to the day its 10 ms tick (half to even) falls in. Day boundaries are
        # even ticks, so that is exactly [start - 5 ms, end - 5 ms). Scanning every row for
        # stray stamps only pays when the extremes say there are some.
        low_ns, high_ns = day_start_ns - HALF_TICK_NS, day_end_ns - HALF_TICK_NS
        if stats["rows_read"] and not (low_ns <= first_ns and last_ns < high_ns):
            (far_outside,) = conn.execute(
                """
                SELECT count(*) FROM lens_raw_irtt
                WHERE day = $day AND region = $region AND ("timestamp" < $far_low OR "timestamp" >= $far_high)
                """,
                {**partition_params, "far_low": low_ns - NEAR_MIDNIGHT_NS, "far_high": high_ns + NEAR_MIDNIGHT_NS},
            ).fetchone()
            stats["rows_outside_day"] = conn.execute(
                """
                DELETE FROM lens_raw_irtt
                WHERE day = $day AND region = $region AND ("timestamp" < $low_ns OR "timestamp" >= $high_ns)
                """,
                {**partition_params, "low_ns": low_ns, "high_ns": high_ns},
            ).fetchone()[0]  # DuckDB's DELETE returns the count
            (stats["lost"],) = conn.execute(
                "SELECT count(*) FILTER (WHERE rtt <= 0) FROM lens_raw_irtt WHERE day = $day AND region = $region",
                partition_params,
            ).fetchone()
            share = stats["rows_outside_day"] / stats["rows_read"]
            if far_outside or share > WARN_OUTSIDE_DAY_SHARE:
                log.warning(
                    "%s: dropped %d of %d rows stamped outside %s (%.3f %%), %d of them more than a minute away "
                    "(a clock reset, or a stamp of 1970?)", partition.key, stats["rows_outside_day"], stats["rows_read"],
                    partition.day, 100 * share, far_outside)
        if stats["rows_read"] and stats["rows_outside_day"] > MAX_OUTSIDE_DAY_SHARE * stats["rows_read"]:
            misfiled = [p.name for p in files.present if not stamps_within_day(p, partition.day)]
            raise LensInputError(
                f"lens_raw_irtt {partition.key}: {stats['rows_outside_day']} of {stats['rows_read']} rows have timestamps "
                f"outside {partition.day} (files starting or ending outside it: {misfiled}); filed under the wrong date?"
            )

    write = warehouse.replace_partition(
        "lens_raw_irtt",
        {"day": partition.day, "region": partition.other},
        select_sql=load_sql("lens", "lens_raw_irtt"),
        params={"files": [str(p) for p in files.present], "day": partition.day, "region": partition.other},
        conn=conn,
        before_commit=inspect,
    )
    return RawLoad(write, files, root / partition.other / partition.day.isoformat(), stats["lost"],
                   stats["truncated_lines"], stats["rows_outside_day"], landing_fingerprint)


def write_clean_groups(warehouse: DuckDBWarehouse, day: dt.date, region: str, min_samples: int,
                       conn: duckdb.DuckDBPyConnection) -> tuple[pa.Table, int, PartitionWrite]:
    """Clean one partition of lens_raw_irtt into lens_clean_groups on ``conn``; returns (groups, duplicate ticks, write)."""
    rows = conn.execute(load_sql("lens", "lens_clean_input"), {"day": day, "region": region}).fetchnumpy()
    groups = clean_groups(np.asarray(rows["timestamp"]), np.asarray(rows["rtt"], dtype=float), min_samples)
    if len(groups) == 0:
        raise EmptyPartitionError(
            f"lens_clean_groups {day}|{region}: no 15 s group has more than {min_samples} observed points"
            " (or lens_raw_irtt holds nothing for it); neither table was changed"
        )
    table = clean_groups_table(groups, day, region, min_samples)
    write = warehouse.replace_partition("lens_clean_groups", {"day": day, "region": region}, data=table, conn=conn)
    return table, groups.duplicate_ticks, write


@dataclass
class Ingested:
    raw: RawLoad
    groups: pa.Table
    duplicate_ticks: int
    clean: PartitionWrite
    min_samples: int

    @property
    def mean_fill_share(self) -> float:
        return 1 - float(self.groups["n_observed"].to_numpy().mean()) / GROUP_POINTS


def ingest_partition(warehouse: DuckDBWarehouse, partition: DayPartition, min_samples: int,
                     log: logging.Logger) -> Ingested:
    """Raw rows and clean groups of a partition in one transaction (retried from the start on a
    DuckLake write conflict): after any failure both tables still describe the same files."""

    def ingest(conn):
        raw = load_raw(partition, warehouse, conn, log)
        return raw, *write_clean_groups(warehouse, partition.day, partition.other, min_samples, conn)

    raw, groups, duplicate_ticks, clean = warehouse.run_transaction(ingest)
    return Ingested(raw, groups, int(duplicate_ticks), clean, min_samples)
