"""The DWCP CSV schema (the guide's 20 columns), its documented value sets, and file validation.

Landing layout: ``<landing>/dwcp/<region>/<YYYY-MM-DD>.csv``, one row per link and minute.
A link is ``(region, node_id, peer_id)``. A file is read, never modified; any row that breaks
the schema fails the whole file with the file, line and field named (a partition is
ingested whole or not at all).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import polars as pl

from netassets.core.files import ragged_row, undecodable_line
from netassets.core.settings import landing_dir, safe_name

NAME = "dwcp"  # the pipeline (landing and artifacts folder name)
DIMENSION = "region"
STEP_SECONDS = 60  # the generator and the seed write one row a minute per link

COLUMNS: dict[str, pl.DataType] = {
    "timestamp": pl.Int64,
    "region": pl.String,
    "az": pl.String,
    "link_type": pl.String,
    "node_id": pl.Int64,
    "peer_id": pl.Int64,
    "rtt_ms": pl.Float64,
    "jitter_ms": pl.Float64,
    "throughput_mbps": pl.Float64,
    "bytes_tx": pl.Int64,
    "bytes_rx": pl.Int64,
    "packet_loss": pl.Float64,
    "retransmits": pl.Int64,
    "congestion_window": pl.Int64,
    "queue_depth": pl.Int64,
    "dwcp_mode": pl.String,
    "network_tier": pl.String,
    "transport_type": pl.String,
    "time_of_day": pl.Int64,
    "day_of_week": pl.Int64,
}

CATEGORIES: dict[str, tuple[str, ...]] = {
    "link_type": ("dc", "metro", "wan"),
    "dwcp_mode": ("standard", "turbo", "reliable"),
    "network_tier": ("Premium", "Standard", "Economy"),
    "transport_type": ("tcp", "quic", "udp"),
}

# Inclusive bounds; None = unbounded on that side.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "throughput_mbps": (0, None),
    "packet_loss": (0, 1),
    "rtt_ms": (0, None),
    "jitter_ms": (0, None),
    "bytes_tx": (0, None),
    "bytes_rx": (0, None),
    "retransmits": (0, None),
    "congestion_window": (0, None),
    "queue_depth": (0, None),
    "time_of_day": (0, 23),
    "day_of_week": (0, 6),
}

FEATURES = (
    "throughput_mbps", "rtt_ms", "packet_loss", "jitter_ms", "time_of_day",
    "day_of_week", "congestion_window", "queue_depth", "retransmits",
)
TARGETS = ("throughput_mbps", "rtt_ms", "packet_loss", "jitter_ms")
LINK = ("region", "node_id", "peer_id")

_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.csv\Z")
_SHOWN = 5  # offending rows quoted in an error message


class RawFileError(ValueError):
    """A landing file that breaks the schema; the message names the file, line(s) and field."""


def landing_file(region: str, day: dt.date) -> Path:
    return landing_dir(NAME) / safe_name(region, DIMENSION) / f"{day.isoformat()}.csv"


def scan_landing() -> dict[tuple[str, str], list[Path]]:
    """{(day, region): [file]} for every ``<region>/<day>.csv`` in the landing folder."""
    root = landing_dir(NAME)
    found: dict[tuple[str, str], list[Path]] = {}
    if not root.is_dir():
        return found
    for path in sorted(root.glob("*/*.csv")):
        match = _DAY_FILE.match(path.name)
        if match:
            found[(match.group(1), path.parent.name)] = [path]
    return found


def optional_day(value: str, field: str) -> str | None:
    """A config's optional ``YYYY-MM-DD`` (empty: None), refused naming the field."""
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"config {field}={value!r} is not a YYYY-MM-DD day") from None


def _lines(mask: pl.Series, frame: pl.DataFrame, column: str) -> str:
    """'line 7 ('abc'), line 9 (...)' for the first offending rows; line 1 is the header."""
    rows = mask.arg_true()
    shown = ", ".join(f"line {i + 2} ({frame[column][i]!r})" for i in rows[:_SHOWN].to_list())
    more = f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else ""
    return f"{len(rows)} row(s): {shown}{more}"


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def read_raw_file(path: Path, region: str, day: dt.date) -> tuple[pl.DataFrame, list[str]]:
    """Parse and validate one landing file; returns (typed frame, ignored extra columns)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: landing file not found")
    header = _header(path)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:  # polars would rename the second copy and read the first as the real column
        raise RawFileError(f"{path}: line 1: column(s) {repeated} appear more than once in the header")
    try:
        text = pl.read_csv(path, infer_schema=False)  # everything as text: we report bad cells by line
    except pl.exceptions.PolarsError as exc:  # ragged rows, bad quoting, not UTF-8
        raise RawFileError(f"{path}: {undecodable_line(path) or ragged_row(path) or 'not a readable CSV'}: {exc}") from None
    missing = [c for c in COLUMNS if c not in text.columns]
    if missing:
        raise RawFileError(f"{path}: missing column(s) {missing}; expected the 20-column DWCP schema")
    extra = [c for c in text.columns if c not in COLUMNS]
    if text.height == 0:
        raise RawFileError(f"{path}: no data rows")

    problems: list[str] = []
    typed = {}
    for column, dtype in COLUMNS.items():
        raw = text[column].str.strip_chars()
        empty = raw.is_null() | (raw == "")
        if empty.any():
            problems.append(f"field {column!r} empty in {_lines(empty, text, column)}")
        value = raw.cast(dtype, strict=False)
        bad_type = value.is_null() & ~empty
        if bad_type.any():
            problems.append(f"field {column!r} is not {dtype} in {_lines(bad_type, text, column)}")
        typed[column] = value
    frame = pl.DataFrame(typed)
    if problems:
        raise RawFileError(f"{path}: " + "; ".join(problems))

    for column, allowed in CATEGORIES.items():
        outside = ~frame[column].is_in(allowed)
        if outside.any():
            problems.append(f"field {column!r} outside {list(allowed)} in {_lines(outside, frame, column)}")
    for column, (low, high) in BOUNDS.items():
        values = frame[column]
        outside = (values.is_nan() | values.is_infinite()) if values.dtype.is_float() else values.is_null()
        if low is not None:
            outside |= values < low
        if high is not None:
            outside |= values > high
        if outside.any():
            problems.append(f"field {column!r} outside [{low}, {high if high is not None else 'inf'}] in "
                            f"{_lines(outside, frame, column)}")
    wrong_region = frame["region"] != region
    if wrong_region.any():
        problems.append(f"field 'region' differs from the partition's region {region!r} in "
                        f"{_lines(wrong_region, frame, 'region')}")
    wrong_az = ~frame["az"].str.starts_with(region)
    if wrong_az.any():
        problems.append(f"field 'az' is not a zone of {region!r} in {_lines(wrong_az, frame, 'az')}")
    row_day = pl.from_epoch(frame["timestamp"], time_unit="s").dt.date()
    wrong_day = row_day != day
    if wrong_day.any():
        problems.append(f"field 'timestamp' falls outside {day} (UTC) in {_lines(wrong_day, frame, 'timestamp')}")
    duplicated = frame.select(pl.struct("node_id", "peer_id", "timestamp").is_duplicated()).to_series()
    if duplicated.any():
        problems.append(f"duplicate (node_id, peer_id, timestamp) in {_lines(duplicated, frame, 'timestamp')}")
    if problems:
        raise RawFileError(f"{path}: " + "; ".join(problems))
    return frame, extra
