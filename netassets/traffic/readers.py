"""Flow files: find them in the landing folder, index them by byte offset, read one flow back.

Landing layout (one folder per capture site and day; the site becomes the partition's
second dimension)::

    $NETASSETS_HOME/landing/traffic/<site>/<YYYY-MM-DD>/*.csv | *.json | *.jsonl

Formats, one flow per record:

- ``.csv``  the seed's feature files (``features_tls_*.csv``): one flow per line, the
  packets written as comma-separated JSON arrays of a fixed dimension (146 in the seed):
  ``[1,0,0.5,...],[0,1,0.25,...]``.
- ``.json`` a JSON array of flow objects as in the CIC-DoHBrw-2020 sample
  (``{"timestamp": [...], "direction_length": [...], "label": 0, ...}``); each packet becomes
  [direction (+1 / -1), length, inter-arrival seconds].
- ``.jsonl`` the same flow objects, one per line (the format to use for large captures).

Files are never loaded whole: a scan walks an ``mmap`` of the file and records each flow's
byte offset and length (memory holds one flow at a time plus O(flows) integers), and
``FlowFile.read`` parses one flow from its offset, as the seed's ``BatchGenerator`` does.
Pages already scanned are released with ``madvise(MADV_DONTNEED)``: a mapped file otherwise
counts in the process's resident set up to its whole size. Raw files are opened read-only.

Bad input (malformed JSON, packets of inconsistent dimension, empty flows, NaN or inf,
non-numeric values) raises ``BadFlowError`` naming the file and line, or is skipped and
counted per reason when the caller asks for that (``skip_bad=True``).
"""

from __future__ import annotations

import datetime as dt
import json
import mmap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import polars as pl

from netassets.core.settings import landing_dir, safe_name

FORMATS = (".csv", ".json", ".jsonl")
_RELEASE_EVERY = 64 << 20  # bytes scanned between two madvise calls
_JSON_CHUNK = 1 << 20


class BadFlowError(ValueError):
    """A flow that cannot be used; ``reason`` is the short category it is counted under."""

    def __init__(self, reason: str, detail: str, path: Path | None = None, line: int | None = None):
        self.reason, self.detail, self.path, self.line = reason, detail, path, line
        where = f"{path}:{line}: " if path is not None else ""
        super().__init__(f"{where}{detail}")

    def located(self, path: Path, line: int) -> "BadFlowError":
        return BadFlowError(self.reason, self.detail, path, line)


@dataclass(frozen=True)
class FlowRecord:
    line: int  # 1-based line where the flow starts
    offset: int  # byte offset of the record in the file
    length: int  # bytes


def packets_from_rows(rows: Any) -> np.ndarray:
    """Validate a flow given as a list of per-packet feature lists -> float64 (packets, features).

    float64 until normalised: a float32 loses the small variations of large-valued features
    (byte counters, absolute times) before standardisation can bring them back to scale."""
    if not isinstance(rows, list) or not rows:
        raise BadFlowError("empty_flow", "empty flow: no packets")
    width = None
    for i, packet in enumerate(rows, 1):
        if not isinstance(packet, list):
            raise BadFlowError("malformed", f"packet {i} is not a JSON array")
        if width is None:
            width = len(packet)
        elif len(packet) != width:
            raise BadFlowError(
                "inconsistent_dimension", f"packet {i} has {len(packet)} features, packet 1 has {width}"
            )
    if width == 0:
        raise BadFlowError("empty_flow", "packets have no features")
    try:
        packets = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadFlowError("non_numeric", "non-numeric feature value") from None
    finite = np.isfinite(packets)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise BadFlowError("non_finite", f"non-finite value {packets[i, j]} at packet {i + 1}, feature {j + 1}")
    return packets


def packets_from_flow_object(flow: Any) -> np.ndarray:
    """A CIC-DoH flow object -> (packets, 3): direction, length, inter-arrival seconds."""
    if not isinstance(flow, dict):
        raise BadFlowError("malformed", "flow is not a JSON object")
    times, signed = flow.get("timestamp"), flow.get("direction_length")
    if not isinstance(times, list) or not isinstance(signed, list):
        raise BadFlowError("malformed", "flow needs 'timestamp' and 'direction_length' arrays")
    if len(times) != len(signed):
        raise BadFlowError(
            "inconsistent_dimension", f"{len(times)} timestamps but {len(signed)} direction_length values"
        )
    packets = packets_from_rows([[t, d] for t, d in zip(times, signed)])
    gaps = np.diff(packets[:, 0], prepend=packets[0, 0])
    if (gaps < 0).any():
        raise BadFlowError("malformed", f"timestamps go backwards at packet {int(np.argmax(gaps < 0)) + 1}")
    return np.stack([np.sign(packets[:, 1]), np.abs(packets[:, 1]), gaps], axis=1)


def _parse_csv_line(raw: bytes) -> np.ndarray:
    try:
        rows = json.loads(b"[" + raw + b"]")
    except json.JSONDecodeError as exc:
        raise BadFlowError("malformed", f"malformed JSON ({exc.msg} at column {exc.colno - 1})") from None
    return packets_from_rows(rows)


def _parse_flow_object(raw: bytes) -> np.ndarray:
    try:
        flow = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadFlowError("malformed", f"malformed JSON ({exc.msg})") from None
    return packets_from_flow_object(flow)


class LineCounter:
    """Line number at increasing positions of a text, each newline counted once.

    Counting from the start of the text at every flow makes a scan quadratic in the text's
    length; only the characters since the previous position are counted here."""

    def __init__(self) -> None:
        self.line, self._pos = 1, 0

    def at(self, text: str, pos: int) -> int:
        self.line += text.count("\n", self._pos, pos)
        self._pos = pos
        return self.line

    def drop(self, n: int) -> None:
        """The text lost its first ``n`` characters (at most the last position asked for)."""
        self._pos -= n


class FlowFile:
    """A read-only mmap of one flow file; ``records()`` scans it, ``read()`` parses one flow."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.format = self.path.suffix.lower()
        if self.format not in FORMATS:
            raise ValueError(f"{self.path}: unsupported flow file type {self.format!r}; expected one of {FORMATS}")
        with open(self.path, "rb") as handle:
            size = handle.seek(0, 2)
            # mmap cannot map an empty file; such a file simply holds no flows.
            self._mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        self.size = size

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()

    def __enter__(self) -> "FlowFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _release(self, start: int, end: int) -> None:
        start -= start % mmap.PAGESIZE
        end -= end % mmap.PAGESIZE
        if end > start:
            self._mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def records(self) -> Iterator[FlowRecord]:
        if self._mm is None:
            return iter(())
        return self._json_array_records() if self.format == ".json" else self._line_records()

    def _line_records(self) -> Iterator[FlowRecord]:
        mm, pos, line, released = self._mm, 0, 1, 0
        while pos < self.size:
            end = mm.find(b"\n", pos)
            end = self.size if end < 0 else end
            length = end - pos - (1 if end > pos and mm[end - 1] == 0x0D else 0)  # tolerate CRLF
            yield FlowRecord(line, pos, length)
            pos, line = end + 1, line + 1
            if pos - released >= _RELEASE_EVERY:
                self._release(released, pos)
                released = pos - pos % mmap.PAGESIZE

    def _json_array_records(self) -> Iterator[FlowRecord]:
        """Walk a JSON array object by object, decoding 1 MB windows of the mmap.

        Bytes are decoded as latin-1 so a character index equals a byte offset; JSON's
        structure is ASCII, and ``read`` decodes each record properly as UTF-8 later.
        """
        decoder, mm, lines = json.JSONDecoder(), self._mm, LineCounter()
        state = {"buf": "", "base": 0}  # buf covers bytes [base, base + len(buf))

        def fill() -> bool:
            start = state["base"] + len(state["buf"])
            if start >= self.size:
                return False
            state["buf"] += mm[start : start + _JSON_CHUNK].decode("latin-1")
            return True

        def skip_space(pos: int) -> int:
            while True:
                buf = state["buf"]
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return pos

        def line_at(pos: int) -> int:
            return lines.at(state["buf"], pos)

        pos = skip_space(0)
        if state["buf"][pos : pos + 1] != "[":
            raise BadFlowError("malformed", "a .json flow file must hold a JSON array of flow objects", self.path, line_at(pos))
        pos = skip_space(pos + 1)
        if state["buf"][pos : pos + 1] == "]":
            return
        while True:
            while True:
                try:
                    _, end = decoder.raw_decode(state["buf"], pos)
                    break
                except json.JSONDecodeError as exc:
                    if not fill():  # the error is real, not a record cut by the window
                        raise BadFlowError("malformed", f"malformed JSON ({exc.msg})", self.path, line_at(pos)) from None
            yield FlowRecord(line_at(pos), state["base"] + pos, end - pos)
            pos = skip_space(end)
            separator = state["buf"][pos : pos + 1]
            if separator == "]":
                return
            if separator != ",":
                raise BadFlowError("malformed", "expected ',' or ']' between flows", self.path, line_at(pos))
            pos = skip_space(pos + 1)
            if pos > _JSON_CHUNK:  # drop the consumed part of the window
                line_at(pos)
                lines.drop(pos)
                self._release(state["base"], state["base"] + pos)
                state["base"] += pos
                state["buf"] = state["buf"][pos:]
                pos = 0

    def read(self, record: FlowRecord) -> np.ndarray:
        """Parse one flow -> float64 (packets, features); errors name the file and line."""
        raw = self._mm[record.offset : record.offset + record.length]
        try:
            if not raw.strip():
                raise BadFlowError("empty_flow", "empty flow: blank line")
            return _parse_csv_line(raw) if self.format == ".csv" else _parse_flow_object(raw)
        except BadFlowError as exc:
            raise exc.located(self.path, record.line) from None


@dataclass
class FlowIndex:
    """What a scan of some files found: one row per usable flow, and what was skipped."""

    frame: pl.DataFrame
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return int(self.frame["n_features"][0])


_INDEX_SCHEMA = {
    "source_file": pl.String,
    "file_format": pl.String,
    "file_size": pl.Int64,
    "file_mtime_ns": pl.Int64,
    "line_no": pl.Int64,
    "byte_offset": pl.Int64,
    "byte_length": pl.Int64,
    "n_packets": pl.Int32,
    "n_features": pl.Int32,
}


def index_files(files: list[Path], root: Path, skip_bad: bool = False) -> FlowIndex:
    """Scan files flow by flow; ``source_file`` is stored relative to ``root`` (the landing folder).

    Every flow is parsed once, so bad input is found here, before anything trains on it. All
    flows of the scanned files must share one packet dimension (a model has one input width).
    """
    columns: dict[str, list] = {name: [] for name in _INDEX_SCHEMA}
    skipped: Counter = Counter()
    examples: list[str] = []
    width_seen: tuple[int, str] | None = None
    for path in files:
        stat = path.stat()
        relative = path.relative_to(root).as_posix()
        if stat.st_size == 0:  # a capture that wrote nothing: say which file, not just "no rows"
            if not skip_bad:
                raise BadFlowError("empty_file", "empty file: no flows", path, 1)
            skipped["empty_file"] += 1
            if len(examples) < 10:
                examples.append(f"{path}:1: empty file: no flows")
            continue
        with FlowFile(path) as flow_file:
            for record in flow_file.records():
                try:
                    packets = flow_file.read(record)
                    if width_seen is None:
                        width_seen = (packets.shape[1], f"{path}:{record.line}")
                    elif packets.shape[1] != width_seen[0]:
                        raise BadFlowError(
                            "inconsistent_dimension",
                            f"packets have {packets.shape[1]} features, but {width_seen[1]} has {width_seen[0]}",
                            path, record.line,
                        )
                except BadFlowError as exc:
                    if not skip_bad:
                        raise
                    skipped[exc.reason] += 1
                    if len(examples) < 10:
                        examples.append(str(exc))
                    continue
                for name, value in zip(
                    _INDEX_SCHEMA,
                    (relative, flow_file.format.lstrip("."), stat.st_size, stat.st_mtime_ns, record.line,
                     record.offset, record.length, packets.shape[0], packets.shape[1]),
                ):
                    columns[name].append(value)
    return FlowIndex(pl.DataFrame(columns, schema=_INDEX_SCHEMA), skipped, examples)


def landing_files(root: Path, day: dt.date, site: str) -> list[Path]:
    folder = root / safe_name(site, "site") / day.isoformat()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)


def scan_landing(root: Path | None = None) -> dict[tuple[str, str], list[Path]]:
    """{(day, site): files} for everything in the landing folder (the sensor validates the names)."""
    root = root or landing_dir("traffic")
    found: dict[tuple[str, str], list[Path]] = {}
    if not root.is_dir():
        return found
    for site_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for day_dir in sorted(p for p in site_dir.iterdir() if p.is_dir()):
            files = sorted(p for p in day_dir.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
            if files:
                found[(day_dir.name, site_dir.name)] = files
    return found
