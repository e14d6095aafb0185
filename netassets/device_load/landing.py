"""Reading and validating ``device_data`` CSV files from the landing folder.

Layout: ``$NETASSETS_HOME/landing/device_load/*.csv``, each file any number of days, routers
and regions (the seed's ``device_data.csv`` loads as is). A file maps to every (day, region)
its rows fall in; the raw asset of one partition reads the matching rows of every file.

The region rule is a regex with one capture group (``RawConfig.region_pattern`` on the raw
asset); the landing sensor places files with the default rule, so a deployment with another
rule launches its partitions itself (or changes ``DEFAULT_REGION_PATTERN``).

Files are read, never modified. A bad file stops ingestion with an error naming the file and
the CSV line (header = line 1): wrong columns, an unparsable timeslot, a negative or missing
metric, a hostname the region rule cannot place, or a (router, timeslot) seen twice (in one
file or across two).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from netassets.core.files import (
    changed_since, file_states, header_mismatch, inside_root, ragged_row, undecodable_line,
)
from netassets.core.settings import landing_dir, safe_name

PIPELINE = "device_load"
COLUMNS = ("hostname", "ifname", "timeslot", "max_metric_value", "mean_metric_value")
METRICS = ("max_metric_value", "mean_metric_value")
TIMESLOT_FORMAT = "%Y-%m-%d %H:%M:%S"
# Default region rule: the hostname's first token ("nl-xy-switch-01" -> "nl").
DEFAULT_REGION_PATTERN = r"^([A-Za-z0-9]+)[-_.]"


class DeviceLoadInputError(ValueError):
    """Bad device_data input; the message names the file and the CSV line."""


def landing_files() -> list[Path]:
    folder = landing_dir(PIPELINE)
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


# The CSV line number's column while a file is read (a data column of the same name would clash).
LINE = "__netassets_line__"


def region_rule(pattern: str) -> re.Pattern:
    """The region rule, refused (ValueError) unless it is a regular expression with one capture
    group that polars' engine runs too: polars extracts the regions, and refuses what Python's
    ``re`` accepts beyond its syntax (lookaround, backreferences) only in the step."""
    try:
        rule = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"region_pattern {pattern!r} is not a regular expression: {exc}") from None
    if rule.groups != 1:
        raise ValueError(f"region_pattern needs exactly one capture group, {pattern!r} has {rule.groups}")
    try:
        pl.Series([""]).str.extract(pattern, 1)
    except pl.exceptions.PolarsError:
        raise ValueError(f"region_pattern {pattern!r} uses what polars' regular expressions do not support "
                         "(lookaround, backreferences)") from None
    return rule


def _read_text(path: Path) -> pl.DataFrame:
    """The file as strings plus its CSV line number, header checked."""
    try:
        frame = pl.read_csv(path, infer_schema=False, row_index_name=LINE, row_index_offset=2)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as exc:
        where = undecodable_line(path) or ragged_row(path) or "cannot be read as CSV"
        raise DeviceLoadInputError(f"{path}: {where}: {exc}") from None
    columns = [c for c in frame.columns if c != LINE]
    mismatch = header_mismatch(path, columns, COLUMNS, ordered=False)
    if mismatch:
        raise DeviceLoadInputError(mismatch)
    return frame


def _first_bad(frame: pl.DataFrame, bad: pl.Expr, path: Path, what: str, show: list[str]) -> None:
    rows = frame.filter(bad)
    if rows.height:
        first = rows.row(0, named=True)
        detail = ", ".join(f"{c}={first[c]!r}" for c in show)
        raise DeviceLoadInputError(f"{path}: line {first[LINE]}: {what} ({detail}); {rows.height} such row(s) in the file")


def read_device_file(path: Path, region_pattern: str = DEFAULT_REGION_PATTERN) -> pl.DataFrame:
    """One validated file: typed columns plus router, region, day, source_file, source_line."""
    rule = region_rule(region_pattern)
    text = _read_text(path)
    frame = text.with_columns(
        pl.col("timeslot").str.strptime(pl.Datetime("us"), TIMESLOT_FORMAT, strict=False).alias("_timeslot"),
        *[pl.col(m).cast(pl.Float64, strict=False).alias(f"_{m}") for m in METRICS],
        pl.col("hostname").str.extract(rule.pattern, 1).alias("region"),
    )
    _first_bad(frame, pl.col("hostname").is_null() | pl.col("ifname").is_null(), path, "empty hostname or ifname", ["hostname", "ifname"])
    _first_bad(frame, pl.col("_timeslot").is_null(), path, f"timeslot is not {TIMESLOT_FORMAT}", ["timeslot"])
    # No datetime holds second 60: parsed, a leap second became the next minute, maybe the next day.
    _first_bad(frame, pl.col("timeslot").str.strip_chars().str.ends_with(":60"), path,
               "timeslot is a leap second (:60), which would be read as the next minute", ["timeslot"])
    for metric in METRICS:
        value = pl.col(f"_{metric}")
        _first_bad(frame, value.is_null() | value.is_nan() | value.is_infinite(), path,
                   f"{metric} is missing or not a finite number", [metric])
        _first_bad(frame, value < 0, path, f"{metric} is negative", [metric])
    # A mean above the max is impossible for one slot: most often swapped columns.
    _first_bad(frame, pl.col("_mean_metric_value") > pl.col("_max_metric_value"), path,
               "mean_metric_value exceeds max_metric_value", ["max_metric_value", "mean_metric_value"])
    _first_bad(frame, pl.col("region").is_null(), path, f"hostname does not match the region rule {region_pattern!r}", ["hostname"])
    for region in frame["region"].unique().to_list():
        try:
            safe_name(region, "region")
        except ValueError as exc:
            line = frame.filter(pl.col("region") == region)[LINE][0]
            raise DeviceLoadInputError(f"{path}: line {line}: {exc}") from None
    frame = frame.select(
        "hostname",
        "ifname",
        (pl.col("hostname") + "-" + pl.col("ifname")).alias("router"),
        "region",
        pl.col("_timeslot").alias("timeslot"),
        pl.col("_timeslot").dt.date().alias("day"),
        *[pl.col(f"_{m}").alias(m) for m in METRICS],
        pl.lit(path.name).alias("source_file"),
        pl.col(LINE).cast(pl.Int64).alias("source_line"),
    )
    _reject_duplicates(frame)
    return frame


def _reject_duplicates(frame: pl.DataFrame) -> None:
    dupes = frame.filter(pl.struct("router", "timeslot").is_duplicated()).sort("router", "timeslot", "source_file", "source_line")
    if dupes.height:
        first, second = dupes.row(0, named=True), dupes.row(1, named=True)
        raise DeviceLoadInputError(
            f"{first['source_file']}: line {first['source_line']} and {second['source_file']}: line {second['source_line']}: "
            f"duplicate row for router {first['router']!r} at {first['timeslot']}; {dupes.height} duplicated rows in all"
        )


def read_landing(files: list[Path], region_pattern: str = DEFAULT_REGION_PATTERN,
                 root: Path | None = None) -> tuple[pl.DataFrame, dict[Path, tuple[int, int]]]:
    """Every file validated, then (router, timeslot) checked unique across files; with the files'
    (size, mtime) taken before reading them (unchanged after: the landing fingerprint's input).

    With ``root`` (the landing folder), a file leading outside it (a link) is refused by name
    without being read. A file that changes while it is read (a copy in progress) is refused, so
    nothing half-copied is stored.
    """
    if not files:
        raise FileNotFoundError(f"no device_data CSV files in {root or landing_dir(PIPELINE)}")
    for path in files:
        if root is not None and not inside_root(path, root):
            raise DeviceLoadInputError(f"{path}: leads outside the landing folder {root} (a link?); refused without reading it")
    before = file_states(files)
    frame = pl.concat([read_device_file(path, region_pattern) for path in files])
    _reject_duplicates(frame)
    growing = changed_since(before)
    if growing:
        raise DeviceLoadInputError(f"{[str(p) for p in growing]} changed while it was read (still being written?); "
                                   "retry once the files are complete")
    return frame, before


def scan_partitions(region_pattern: str = DEFAULT_REGION_PATTERN) -> dict[tuple[str, str], list[Path]]:
    """{(day, region): [files with rows there]} for the landing sensor.

    Lenient on purpose: rows it cannot place are skipped here and reported, with their line,
    by the raw asset when it reads the file.
    """
    partitions: dict[tuple[str, str], list[Path]] = {}
    root = landing_dir(PIPELINE)
    for path in landing_files():
        if not inside_root(path, root):
            continue  # never read; device_load_raw refuses it by name
        try:
            frame = pl.read_csv(path, columns=["hostname", "timeslot"], infer_schema=False)
        except (OSError, pl.exceptions.ComputeError, pl.exceptions.NoDataError, pl.exceptions.ColumnNotFoundError):
            continue  # a broken link, or a file the raw asset will name with its line
        placed = frame.select(
            pl.col("timeslot").str.strptime(pl.Datetime("us"), TIMESLOT_FORMAT, strict=False).dt.date().alias("day"),
            pl.col("hostname").str.extract(region_pattern, 1).alias("region"),
        ).drop_nulls().unique()
        for day, region in placed.iter_rows():
            partitions.setdefault((day.isoformat(), region), []).append(path)
    return partitions


def partition_rows(day, region: str, region_pattern: str = DEFAULT_REGION_PATTERN
                   ) -> tuple[pl.DataFrame, list[Path], dict[Path, tuple[int, int]]]:
    """The validated rows of one (day, region) from every landing file, the files read, and the
    states (as read) of those with rows in the partition."""
    files = landing_files()
    frame, states = read_landing(files, region_pattern, root=landing_dir(PIPELINE))
    rows = frame.filter((pl.col("day") == day) & (pl.col("region") == region))
    sources = set(rows["source_file"].unique().to_list())
    return rows, files, {path: state for path, state in states.items() if path.name in sources}
