"""Finding and validating a day's LENS hour files before DuckDB reads them."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from netassets.core.files import excerpt, header_mismatch, inside_root
from netassets.core.settings import landing_dir
from netassets.core.sql import load_sql

EXPECTED_COLUMNS = ("timestamp", "rtt", "uplink", "downlink")
RTT_MAX_MS = 10_000
LOST = -1.0

# A value each latency column must hold, as SQL over the loaded rows and as Python for
# naming the first offending line: the lost marker -1, or a finite latency in [0, 10000) ms.
# An rtt of 0 is a lost packet too (some captures write it so; the seed counts rtt <= 0 as
# missing). Any other negative value, NaN or inf means a corrupt file and is refused (the
# seed would silently drop it as lost).
VALID_VALUE_SQL = " AND ".join(f"({c} = {LOST} OR ({c} >= 0 AND {c} < {RTT_MAX_MS}))" for c in ("rtt", "uplink", "downlink"))
# Longest header line accepted: the real one is 31 bytes. Reading stops there, so a file
# without newlines (binary, compressed, a headerless dump) costs no memory to refuse.
MAX_HEADER_BYTES = 1024
FLOAT_STAMP = re.compile(rb"^\s*[-+]?\d*\.?\d*[eE.]")  # 1.6988e+18, 1698796800123456789.0


def _valid(value: float) -> bool:
    return value == LOST or 0 <= value < RTT_MAX_MS
HOUR_FILE = re.compile(r"^irtt-10ms-1h-(\d{4}-\d{2}-\d{2})-(\d{2})-00-00\.csv\Z")


class LensInputError(ValueError):
    """Bad LENS input; the message names the file, and the line or column where known."""


@dataclass
class DayFiles:
    present: list[Path] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)  # zero bytes or a header only
    missing_hours: list[int] = field(default_factory=list)


def hour_path(root: Path, region: str, day: dt.date, hour: int) -> Path:
    return root / region / day.isoformat() / f"irtt-10ms-1h-{day.isoformat()}-{hour:02d}-00-00.csv"


def day_files(root: Path, region: str, day: dt.date) -> DayFiles:
    """The 24 expected hour files of a day, sorted into present / empty / missing.

    Reads at most the header and the first data line of each file: a file that is no LENS
    CSV is refused from those, with a short excerpt, whatever its size.
    """
    found = DayFiles()
    for hour in range(24):
        path = hour_path(root, region, day, hour)
        if not path.is_file():
            found.missing_hours.append(hour)
            continue
        if not inside_root(path, root):
            raise LensInputError(f"{path}: leads outside the landing root {root} (a link?); refused without reading it")
        with path.open("rb") as handle:
            header = handle.readline(MAX_HEADER_BYTES)
            first_line = handle.readline(MAX_HEADER_BYTES)
        if not header.strip():
            found.empty.append(path)
            continue
        if not header.endswith(b"\n") and len(header) == MAX_HEADER_BYTES:
            raise LensInputError(f"{path}: line 1: no header line within {MAX_HEADER_BYTES} bytes, starts {excerpt(header)}; "
                                 f"expected {','.join(EXPECTED_COLUMNS)} (not a LENS irtt CSV?)")
        columns = tuple(c.strip().strip('"') for c in header.decode("utf-8", "replace").strip().split(","))
        mismatch = header_mismatch(path, columns, EXPECTED_COLUMNS)
        if mismatch:
            raise LensInputError(mismatch)
        stamp = first_line.split(b",", 1)[0]
        if FLOAT_STAMP.match(stamp):
            # DuckDB would read 1.6988e+18 as a BIGINT through a double, losing the nanoseconds silently.
            raise LensInputError(non_integer_stamp(path, 2, stamp))
        # Empty: nothing but blank lines after the header. A blank line before data is skipped by
        # the reader, as the seed's pandas.read_csv does; the file's rows are not dropped with it.
        blank_start = not first_line.strip()
        (found.empty if blank_start and _nothing_but_blanks_after(path, len(header) + len(first_line)) else
         found.present).append(path)
    return found


def _nothing_but_blanks_after(path: Path, offset: int) -> bool:
    with path.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def non_integer_stamp(path: Path, line: int | None, stamp: bytes | str) -> str:
    where = f"{path}: line {line}" if line else f"{path}"
    return (f"{where}: column 'timestamp': {excerpt(stamp)} is not integer nanoseconds "
            "(scientific or decimal notation loses precision); write the stamps as integers")


def first_non_integer_stamp(conn: duckdb.DuckDBPyConnection, files: list[Path]) -> str | None:
    """A message naming the first stamp in ``files`` written as a decimal or in scientific notation
    (or None): DuckDB's BIGINT column takes 1.6988e+18 or ...555.7 through a double, rounding it
    without a word, so its reader's files are looked at once more with the stamps as text."""
    found = conn.execute(load_sql("lens", "lens_non_integer_stamp"), {"files": [str(p) for p in files]}).fetchone()
    if found is None:
        return None
    path, stamp = Path(found[0]), found[1]
    with path.open(newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if line_number > 1 and row and row[0] == stamp:
                return non_integer_stamp(path, line_number, stamp)
    return non_integer_stamp(path, None, stamp)


def rejected_lines(conn: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """Split DuckDB's CSV rejects into (truncated last lines, real errors), both as messages.

    A truncated last line is a final line without a newline that fails to parse: a capture cut
    off mid-write. It is dropped and counted; any other bad line is an error.
    """
    rows = conn.execute(
        """
        -- one row per bad line (DuckDB reports each missing column of a short line separately)
        SELECT s.file_path, r.line, min(r.column_name), min(r.error_type), any_value(r.csv_line), min(r.error_message)
        FROM lens_rejects r JOIN lens_reject_scans s USING (scan_id, file_id)
        GROUP BY s.file_path, r.line
        ORDER BY s.file_path, r.line
        """
    ).fetchall()
    truncated, errors = [], []
    for path, line, column, error_type, csv_line, message in rows:
        unterminated_last_line = _ends_without_newline_with(Path(path), csv_line.encode())
        where = (f"{path}: line {line}: column {column!r}: {error_type.lower()}: {excerpt(message, 200)} "
                 f"(line reads {excerpt(csv_line)})")
        (truncated if unterminated_last_line else errors).append(where)
    return truncated, errors


def _ends_without_newline_with(path: Path, last_line: bytes) -> bool:
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(0, size - len(last_line) - 1))
        tail = handle.read()
    return not tail.endswith(b"\n") and tail.endswith(last_line)


def stamps_within_day(path: Path, day: dt.date) -> bool:
    """Whether a file's first and last data lines are stamped within ``day`` (UTC).

    Used only to name the culprits when many rows fall outside the partition's day: irtt
    writes in time order, so a misfiled hour shows at its ends.
    """
    start_ns = int(dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp()) * 10**9
    with path.open("rb") as handle:
        handle.readline()
        first = handle.readline()
        handle.seek(max(0, path.stat().st_size - 256))
        last = handle.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        stamps = [int(line.split(b",", 1)[0]) for line in (first, last)]
    except ValueError:
        return True  # unparsable ends are reported by the CSV reader itself
    return all(start_ns <= s < start_ns + 86_400 * 10**9 for s in stamps)


def first_invalid_value(files: list[Path]) -> str:
    """'file: line N: column ...' for the first empty field or latency value outside its valid set.

    Runs only once SQL has found such a value, to name where it is. Read as CSV, as the readers
    read it: a quoted header or value is the same as an unquoted one.
    """
    for path in files:
        with path.open(newline="") as handle:
            rows = csv.reader(handle)
            header = [name.strip() for name in next(rows, [])]
            for line_number, row in enumerate(rows, start=2):
                if not any(field.strip() for field in row):
                    continue  # a blank line: skipped by the readers
                fields = dict(zip(header, row))
                for column in EXPECTED_COLUMNS:
                    raw = fields.get(column, "")
                    if not raw.strip():
                        return f"{path}: line {line_number}: column {column!r} is empty"
                    if column == "timestamp":
                        continue
                    try:
                        value = float(raw)
                    except ValueError:
                        continue  # unparsable values are the CSV reader's to report
                    if not _valid(value):
                        return (f"{path}: line {line_number}: column {column!r}: value {excerpt(raw.strip())} is neither "
                                f"the lost marker -1 nor a finite latency in [0, {RTT_MAX_MS}) ms (0 counts as lost)")
    return f"a value in {[str(p) for p in files]} (the offending line could not be located again)"


def scan_lens_root(root: Path | None = None) -> dict[tuple[str, str], list[Path]]:
    """The landing scan: {(day, region): hour files} for ``{root}/{region}/{day}/irtt-10ms-1h-{day}-{HH}-00-00.csv``."""
    root = root or landing_dir("lens")
    found: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in root.glob("*/*/irtt-10ms-1h-*.csv"):
        match = HOUR_FILE.match(path.name)
        if match and match.group(1) == path.parent.name:
            found[(path.parent.name, path.parent.parent.name)].append(path)
    return found
