"""LENS ingestion, the work of the lens_ingest step: a day x region's hour CSVs -> lens_raw_irtt
(one row per hour file: its statistics and state) + lens_clean_groups (15 s groups on a 10 ms grid).

The raw rows are not copied into the warehouse: the landing CSVs are the raw data, immutable,
and are read once, into memory, where the same arrays are validated, counted and cleaned. SQL
reaches them through the ``lens_raw_irtt_rows(day, region)`` macro, which reads the files. Both
tables are replaced in one warehouse transaction, so after any failure (bad file, no group, a
kill) they still describe the same files, the previous ones.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from netassets.core.automation import fingerprint
from netassets.core.files import changed_since, file_states
from netassets.core.partitions import DayPartition
from netassets.core.settings import landing_dir
from netassets.core.sql import load_sql
from netassets.core.warehouse import (
    WIDE_ROW_GROUP_SIZE,
    DuckDBWarehouse,
    EmptyPartitionError,
    PartitionWrite,
    in_row_groups,
)
from netassets.lens.cleaning import GROUP_POINTS, HALF_TICK_NS, MISSING, CleanGroups, clean_groups, clean_groups_table
from netassets.lens.raw import (
    HOUR_FILE,
    LOST,
    RTT_MAX_MS,
    DayFiles,
    LensInputError,
    day_files,
    first_invalid_value,
    first_non_integer_stamp,
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
SCHEMA = {"timestamp": pl.Int64, "rtt": pl.Float64, "uplink": pl.Float64, "downlink": pl.Float64}
LATENCY_COLUMNS = ("rtt", "uplink", "downlink")


@dataclass
class RawRows:
    """A partition's rows as read, one array per present file in file order: the two columns
    cleaning needs (uplink and downlink are validated while read, then let go). Kept per file,
    not concatenated: the statistics are per file, and cleaning copies only the received rows."""

    timestamps: list[np.ndarray]
    rtts: list[np.ndarray]
    truncated: list[str]  # dropped truncated last lines, as messages
    reader: str  # "polars", or "duckdb" when polars could not read the files cleanly

    def __len__(self) -> int:
        return sum(len(stamps) for stamps in self.timestamps)


# Four files read at a time on two cores: each read has serial stretches (opening, splitting,
# gathering its chunks) that leave polars' own threads idle; a day's 24 files took 0.35 s
# against 0.39 s two at a time.
READ_FILES_AT_ONCE = 4


def _invalid_values() -> pl.Expr:
    """How many values are neither the lost marker -1 nor a latency in [0, 10000) ms, and null
    stamps. An empty latency field reads as NaN or null (DuckDB path): invalid too (polars orders
    NaN above every number, so it fails ``< 10000``)."""
    invalid = pl.col("timestamp").null_count()
    for name in LATENCY_COLUMNS:
        value = pl.col(name)
        invalid = invalid + ((value == LOST) | ((value >= 0) & (value < RTT_MAX_MS))).not_().fill_null(True).sum()
    return invalid


def _polars_read(files: list[Path]) -> list[tuple[np.ndarray, np.ndarray, int]] | None:
    """Each file read by polars: its stamps, its rtt and its count of invalid values, or None when
    any fails or has an empty field: DuckDB then re-reads them to name the line."""

    def read(path: Path) -> tuple[np.ndarray, np.ndarray, int] | None:
        frame = pl.read_csv(path, schema=SCHEMA, has_header=True)
        nulls, invalid = frame.select(pl.sum_horizontal(pl.all().null_count()).alias("nulls"),
                                      _invalid_values().alias("invalid")).row(0)
        if nulls:
            return None
        return frame["timestamp"].to_numpy(), frame["rtt"].to_numpy(), invalid

    try:
        with ThreadPoolExecutor(max_workers=READ_FILES_AT_ONCE) as pool:
            read_files = list(pool.map(read, files))
    except (pl.exceptions.PolarsError, ValueError):
        return None
    return None if any(r is None for r in read_files) else read_files


def _duckdb_read(files: list[Path], log: logging.Logger) -> tuple[pl.DataFrame, np.ndarray, list[str]]:
    """The files read by DuckDB, whose rejects tables say exactly which line is bad and why."""
    conn = duckdb.connect()
    try:
        table = conn.execute(load_sql("lens", "lens_raw_irtt"), {"files": [str(p) for p in files]}).to_arrow_table()
        truncated, errors = rejected_lines(conn)
        if not errors and (rounded := first_non_integer_stamp(conn, files)):
            errors = [rounded]
    finally:
        conn.close()
    if errors:
        more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
        raise LensInputError(errors[0] + more)
    for message in truncated:
        log.warning("dropping truncated last line: %s", message)
    rows = pl.from_arrow(table)
    per_file = dict(rows.group_by("filename").len().iter_rows())
    return rows.drop("filename"), np.array([per_file.get(str(p), 0) for p in files], dtype=np.int64), truncated


def read_rows(partition: DayPartition, files: DayFiles, log: logging.Logger) -> RawRows:
    """Every row of the partition's present hour files; a bad line or value is a LensInputError
    naming the file, the line and the column."""
    read_files = _polars_read(files.present)
    if read_files is not None:
        stamps, rtts = [stamps for stamps, _, _ in read_files], [rtt for _, rtt, _ in read_files]
        invalid, truncated, reader = sum(count for _, _, count in read_files), [], "polars"
    else:
        rows, file_rows, truncated = _duckdb_read(files.present, log)
        split = np.cumsum(file_rows)[:-1]
        stamps, rtts = np.split(rows["timestamp"].to_numpy(), split), np.split(rows["rtt"].to_numpy(), split)
        invalid, reader = rows.select(_invalid_values()).item(), "duckdb"
    if invalid:
        raise LensInputError(f"{first_invalid_value(files.present)} ({invalid} such value(s) in {partition.key})")
    return RawRows(stamps, rtts, truncated, reader)


def within_day(partition: DayPartition, rows: RawRows, files: DayFiles, log: logging.Logger) -> list[np.ndarray] | None:
    """Which rows of each file belong to the day, as masks (None: all of them): a stamp belongs to
    the day its 10 ms tick (half to even) falls in. Day boundaries are even ticks, so that is
    exactly [start - 5 ms, end - 5 ms)."""
    day_start_ns = int(dt.datetime.combine(partition.day, dt.time(), dt.timezone.utc).timestamp()) * 10**9
    low_ns, high_ns = day_start_ns - HALF_TICK_NS, day_start_ns + 86_400 * 10**9 - HALF_TICK_NS
    if all(not len(stamps) or (low_ns <= stamps.min() and stamps.max() < high_ns) for stamps in rows.timestamps):
        return None  # the usual day: no stray stamps, no mask to count or apply
    inside = [(stamps >= low_ns) & (stamps < high_ns) for stamps in rows.timestamps]
    total = len(rows)
    outside = total - sum(int(np.count_nonzero(mask)) for mask in inside)
    share = outside / total
    if outside > MAX_OUTSIDE_DAY_SHARE * total:
        misfiled = [p.name for p in files.present if not stamps_within_day(p, partition.day)]
        raise LensInputError(
            f"lens_raw_irtt {partition.key}: {outside} of {total} rows have timestamps "
            f"outside {partition.day} (files starting or ending outside it: {misfiled}); filed under the wrong date?"
        )
    far_outside = sum(int(np.count_nonzero((stamps < low_ns - NEAR_MIDNIGHT_NS) | (stamps >= high_ns + NEAR_MIDNIGHT_NS)))
                      for stamps in rows.timestamps)
    if far_outside or share > WARN_OUTSIDE_DAY_SHARE:
        log.warning(
            "%s: dropped %d of %d rows stamped outside %s (%.3f %%), %d of them more than a minute away "
            "(a clock reset, or a stamp of 1970?)", partition.key, outside, total, partition.day, 100 * share,
            far_outside)
    return inside


def received_in_day(rows: RawRows, inside: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """The stamps and rtt of the day's received packets, in file order: a lost packet (rtt <= 0) is
    dropped before any cleaning rule, as the seed does. Each file's rows are copied straight into
    their place in the day's arrays, two files at a time (0.07 s against 0.13 s for a full day)."""
    masks = [rtt > 0 if inside is None else (rtt > 0) & mask
             for rtt, mask in zip(rows.rtts, inside or [None] * len(rows.rtts))]
    bounds = np.concatenate([[0], np.cumsum([np.count_nonzero(mask) for mask in masks])]).astype(np.int64)
    stamps, rtt = np.empty(bounds[-1], np.int64), np.empty(bounds[-1])

    def copy(file: int) -> None:
        place = slice(bounds[file], bounds[file + 1])
        np.compress(masks[file], rows.timestamps[file], out=stamps[place])
        np.compress(masks[file], rows.rtts[file], out=rtt[place])

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(copy, range(len(masks))))
    return stamps, rtt


def file_statistics(partition: DayPartition, files: DayFiles, rows: RawRows, inside: list[np.ndarray] | None) -> pa.Table:
    """lens_raw_irtt's rows: one per hour file that holds rows of the day, with statistics of those
    rows only. A function of the data, not of the files' bytes: a file re-landed with the same rows
    (or with a truncated last line, or a stray stamp more, both dropped) gives the same table. The
    files' states are the materialisation's fingerprint."""
    table: dict[str, list] = {name: [] for name in (
        "hour", "file", "rows", "lost", "duplicate_stamps", "first_timestamp", "last_timestamp")}
    for path, stamps, rtt, kept in zip(files.present, rows.timestamps, rows.rtts, inside or [slice(None)] * len(rows.rtts)):
        own = stamps[kept]
        if not len(own):
            continue
        # irtt writes in time order: equal neighbours are the duplicates (a sort only when a file is not)
        ordered = bool(np.all(own[1:] >= own[:-1]))
        table["hour"].append(int(HOUR_FILE.match(path.name).group(2)))
        table["file"].append(str(path))
        table["rows"].append(len(own))
        table["lost"].append(int(np.count_nonzero(rtt[kept] <= 0)))
        table["duplicate_stamps"].append(int(np.count_nonzero(own[1:] == own[:-1])) if ordered
                                         else len(own) - len(np.unique(own)))
        table["first_timestamp"].append(int(own.min()))
        table["last_timestamp"].append(int(own.max()))
    n = len(table["hour"])
    return pa.table({
        "day": pa.array([partition.day] * n, pa.date32()),
        "region": pa.array([partition.other] * n, pa.string()),
        "hour": pa.array(table["hour"], pa.int8()),
        "file": pa.array(table["file"], pa.string()),
        **{name: pa.array(table[name], pa.int64()) for name in
           ("rows", "lost", "duplicate_stamps", "first_timestamp", "last_timestamp")},
    })


@dataclass
class RawLoad:
    """What lens_raw_irtt recorded of a partition's hour files, and what reading them dropped."""

    write: PartitionWrite
    statistics: pa.Table
    files: DayFiles
    source: Path
    rows: int
    lost: int
    truncated_lines: int
    rows_outside_day: int
    reader: str
    fingerprint: str = ""  # of the hour files read (and the empty ones the landing scan lists too)

    @property
    def lost_packet_share(self) -> float:
        return self.lost / self.rows

    @property
    def metadata(self) -> dict:
        # The asset's rows are the raw rows (in the landing files); its table holds one row per file.
        return {**self.write.metadata, "dagster/row_count": self.rows}


@dataclass
class Ingested:
    raw: RawLoad
    groups: CleanGroups
    table: pa.Table
    clean: PartitionWrite
    min_samples: int

    @property
    def duplicate_ticks(self) -> int:
        return self.groups.duplicate_ticks

    @property
    def mean_fill_share(self) -> float:
        return 1 - float(self.groups.n_observed.mean()) / GROUP_POINTS


def _drop_old_row_copy(conn: duckdb.DuckDBPyConnection, log: logging.Logger) -> None:
    """Warehouses written before the one-scan ingest hold a copy of every raw row under the
    table's name; the files are the raw data, so the copy goes."""
    columns = {row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'lens_raw_irtt'").fetchall()}
    if "rtt" in columns:
        log.warning("lens_raw_irtt held a copy of the raw rows (an older netassets); dropping it: the raw rows are "
                    "read from the landing files (lens_raw_irtt_rows(day, region)), the table keeps one row per file")
        conn.execute("DROP TABLE lens_raw_irtt")


def _store_token_as_bitmap(conn: duckdb.DuckDBPyConnection, log: logging.Logger) -> None:
    """Warehouses written before the bitmap hold the token fill as a second list of doubles; it
    becomes the bitmap of received points (every partition, in this transaction)."""
    columns = {row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'lens_clean_groups'").fetchall()}
    if "rtt_token" not in columns:
        return
    log.warning("lens_clean_groups stores the token fill as a list (an older netassets); replacing it by the bitmap "
                "rtt_observed in every partition (the token fill is lens_rtt_token(rtt_nearest, rtt_observed))")
    # A new table rather than ALTER + UPDATE: DuckDB refuses to commit rows written to a table
    # altered in the same transaction.
    conn.execute("""
        CREATE OR REPLACE TABLE lens_clean_groups AS
        SELECT * EXCLUDE (rtt_token), CAST(CAST(
            array_to_string(list_transform(rtt_token, x -> CASE WHEN x <> -1 THEN '1' ELSE '0' END), '')
            || repeat('0', (8 - len(rtt_token) % 8) % 8) AS BIT) AS BLOB) AS rtt_observed
        FROM lens_clean_groups""")


def _create_macros(conn: duckdb.DuckDBPyConnection, root: Path) -> None:
    literal = "'" + str(root.resolve()).replace("'", "''") + "'"
    conn.execute(load_sql("lens", "lens_raw_irtt_rows").replace("$root", literal))
    conn.execute(load_sql("lens", "lens_rtt_token"))


def clean_partition(partition: DayPartition, timestamp: np.ndarray, rtt: np.ndarray,
                    min_samples: int) -> tuple[CleanGroups, pa.Table]:
    """The day's received packets (``received_in_day``) -> its kept groups and their
    lens_clean_groups rows."""
    groups = clean_groups(timestamp, rtt, min_samples)
    if len(groups) == 0:
        raise EmptyPartitionError(
            f"lens_clean_groups {partition.key}: no 15 s group has more than {min_samples} observed points"
            " (or the hour files hold no received packet in the day); neither table was changed"
        )
    return groups, clean_groups_table(groups, partition.day, partition.other, min_samples)


@dataclass
class Prepared:
    """A partition read, validated and cleaned in memory: everything lens_ingest writes, and the
    arrays its checks validate, before the warehouse is touched."""

    partition: DayPartition
    root: Path
    source: Path  # the partition's folder under root
    files: DayFiles
    landing_fingerprint: str
    rows_read: int
    truncated_lines: int
    reader: str
    statistics: pa.Table
    groups: CleanGroups
    table: pa.Table
    min_samples: int


def prepare_partition(partition: DayPartition, min_samples: int, log: logging.Logger,
                      counted: Callable[[pa.Table], None] = lambda statistics: None) -> Prepared:
    """Read the partition's hour files once; validate, count and clean the same arrays. A bad file
    or an empty partition raises here, before anything is written. ``counted(statistics)`` is
    called with lens_raw_irtt's rows as soon as they exist, before the cleaning."""
    root = landing_dir("lens")
    source = root / partition.other / partition.day.isoformat()
    files = day_files(root, partition.other, partition.day)
    if not files.present:
        raise EmptyPartitionError(
            f"lens_raw_irtt {partition.key}: no hour files with data under {source}"
            f" (missing hours {files.missing_hours}, empty files {[p.name for p in files.empty]})"
        )
    if files.missing_hours:
        log.warning("%s: missing hour files %s", partition.key, files.missing_hours)
    states = file_states(files.present)
    landing_fingerprint = fingerprint({**states, **file_states(files.empty)})

    rows = read_rows(partition, files, log)
    growing = changed_since(states)
    if growing:  # a copy still in progress: what was read may be a prefix of the file
        raise LensInputError(f"lens_raw_irtt {partition.key}: {[str(p) for p in growing]} changed while it was read "
                             "(still being written?); nothing was stored, retry once the files are complete")
    inside = within_day(partition, rows, files, log)
    statistics = file_statistics(partition, files, rows, inside)
    counted(statistics)
    groups, table = clean_partition(partition, *received_in_day(rows, inside), min_samples)
    return Prepared(partition, root, source, files, landing_fingerprint, len(rows), len(rows.truncated), rows.reader,
                    statistics, groups, table, min_samples)


def write_partition(warehouse: DuckDBWarehouse, prepared: Prepared, log: logging.Logger) -> Ingested:
    """Replace both tables' partition in one transaction (retried from the start on a DuckLake
    write conflict)."""
    partition, root, statistics = prepared.partition, prepared.root, prepared.statistics
    where = {"day": partition.day, "region": partition.other}

    def write(conn: duckdb.DuckDBPyConnection) -> tuple[PartitionWrite, PartitionWrite]:
        if warehouse.lake_settings() is None:  # DuckLake catalogs hold no macros
            _drop_old_row_copy(conn, log)
            _store_token_as_bitmap(conn, log)
            _create_macros(conn, root)
        return (warehouse.replace_partition("lens_raw_irtt", where, data=statistics, conn=conn),
                warehouse.replace_partition("lens_clean_groups", where, data=in_row_groups(prepared.table), conn=conn))

    raw_write, clean_write = warehouse.run_transaction(write, row_group_size=WIDE_ROW_GROUP_SIZE)
    in_day = int(statistics["rows"].to_numpy().sum())
    raw = RawLoad(raw_write, statistics, prepared.files, prepared.source, in_day,
                  int(statistics["lost"].to_numpy().sum()), prepared.truncated_lines, prepared.rows_read - in_day,
                  prepared.reader, prepared.landing_fingerprint)
    return Ingested(raw, prepared.groups, prepared.table, clean_write, prepared.min_samples)


def clean_group_summary(groups: CleanGroups, table: pa.Table) -> dict[str, np.ndarray]:
    """Per clean group, what lens_clean_groups' check validates: point counts, fill shares and the
    extremes of both fills, from the arrays that were written (no re-read of 17 M grid points)."""
    token = groups.token
    nearest = table["rtt_nearest"].combine_chunks().values.to_numpy().reshape(len(groups), GROUP_POINTS)
    observed = token != MISSING
    min_samples = int(table["min_samples"][0].as_py()) if len(groups) else 0
    return {
        "group_id": groups.group_id,
        "group_start": table["group_start"].to_numpy(),
        "n_observed": groups.n_observed,
        "token_points": np.full(len(groups), token.shape[1]),
        "nearest_points": np.full(len(groups), nearest.shape[1]),
        "fill_share": 1 - groups.n_observed / GROUP_POINTS,
        "max_fill_share": np.full(len(groups), 1 - (min_samples + 1) / GROUP_POINTS),
        "token_min_observed": np.where(observed, token, np.inf).min(axis=1),
        "token_max": token.max(axis=1),
        "nearest_min": nearest.min(axis=1),
        "nearest_max": nearest.max(axis=1),
    }
