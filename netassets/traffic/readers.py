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

A ``.csv`` flow is decoded by simdjson straight into doubles, a flow object by orjson (both
several times faster than ``json``); a flow either refuses or that is not a clean rectangle of
finite numbers is parsed again by the stdlib reference parser
(``_parse_csv_line_stdlib``, ``_parse_flow_object_stdlib``), which raises the error, so every
message below is the same whichever parser saw the flow first. ``index_files(..., cache=DIR)``
also writes the parsed packets into the binary packet cache (``traffic.packet_file``).

Bad input raises ``BadFlowError`` naming the file and the 1-based line, with at most a short
escaped excerpt of the offending bytes (``core.files.excerpt``), or is skipped and counted per
reason when the caller asks for that (``skip_bad=True``). Reasons: ``nul_byte``,
``invalid_utf8``, ``malformed`` (bad JSON, binary junk, a truncated record), ``truncated_file``
(a .json array that ends before its ``]``), ``compressed_file`` (gzip / zip / bzip2 / xz /
zstd bytes under a flow file name), ``empty_file`` (0 bytes, blank, or an empty JSON array),
``empty_flow``, ``inconsistent_dimension``, ``non_numeric``, ``non_finite`` (NaN, Infinity, or
a number beyond float64). A problem with the file itself (compressed, truncated array,
malformed array structure) skips the rest of that file when skipping.

``index_files`` refuses, by name and before reading anything, a file whose resolved path lies
outside the landing root (a link leading elsewhere), and refuses the whole scan when a file
changed while it was read (size or mtime before != after): nothing is returned to store.
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import mmap
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
import polars as pl
import simdjson

from netassets.core.files import changed_since, excerpt, file_states, inside_root
from netassets.core.settings import landing_dir, safe_name

FORMATS = (".csv", ".json", ".jsonl")
_RELEASE_EVERY = 64 << 20  # bytes scanned between two madvise calls
_JSON_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
_COMPRESSED = {b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
               b"\x28\xb5\x2f\xfd": "zstd"}
_QUOTE_BEFORE, _QUOTE_BYTES = 10, 40  # an excerpt starts a little before the bad spot
# A JSON error this close to the end of the scan window may be a record the window cut: read on.
_JSON_RECORD_TAIL = 1 << 16
MAX_EXAMPLES = 10  # skipped flows quoted (file:line: reason) in the index's examples
_local = threading.local()  # one simdjson parser per thread: it reuses its buffers, and is not thread-safe
# A parser keeps the buffers of the longest document it has parsed (~5x its size): a longer line
# gets a parser of its own, freed with the line, so a reader holds one flow's worth of memory.
REUSED_PARSER_MAX_BYTES = 8 << 20


class BadFlowError(ValueError):
    """A flow that cannot be used; ``reason`` is the short category it is counted under.

    ``lines_in`` is how many lines into its record the problem lies (a multi-line JSON object):
    ``located`` adds it to the record's first line."""

    def __init__(self, reason: str, detail: str, path: Path | None = None, line: int | None = None,
                 lines_in: int = 0):
        self.reason, self.detail, self.path, self.line, self.lines_in = reason, detail, path, line, lines_in
        where = f"{path}:{line}: " if path is not None else ""
        super().__init__(f"{where}{detail}")

    def located(self, path: Path, line: int) -> "BadFlowError":
        return BadFlowError(self.reason, self.detail, path, line + self.lines_in)


class RefusedFileError(ValueError):
    """A landing file that is not read at all: it leads outside the landing root, or it changed
    while it was being read."""


def quote(raw: bytes | str, at: int = 0) -> str:
    """A short escaped excerpt of ``raw`` around position ``at``."""
    start = max(0, at - _QUOTE_BEFORE)
    return excerpt(raw[start : start + _QUOTE_BYTES])


def _position(raw: bytes | str, at: int) -> tuple[int, int]:
    """(lines into ``raw``, 1-based column on that line) of position ``at``."""
    newline = b"\n" if isinstance(raw, bytes) else "\n"
    return raw.count(newline, 0, at), at - (raw.rfind(newline, 0, at) + 1) + 1


def check_bytes(raw: bytes, final: bool = True) -> str:
    """``raw`` as UTF-8 text; NUL bytes and invalid UTF-8 refused, naming the column and quoting the
    bytes around it. ``final=False``: a multi-byte character cut off at the end is no error."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        lines_in, column = _position(raw, nul)
        raise BadFlowError("nul_byte", f"NUL byte at column {column} (binary data, not text): {quote(raw, nul)}",
                           lines_in=lines_in)
    try:
        return raw.decode("utf-8") if final else codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
    except UnicodeDecodeError as exc:
        lines_in, column = _position(raw, exc.start)
        raise BadFlowError("invalid_utf8", f"invalid UTF-8 at column {column} ({exc.reason}): {quote(raw, exc.start)}",
                           lines_in=lines_in) from None


def _json_error(text: str, exc: json.JSONDecodeError, shift: int = 0) -> BadFlowError:
    """``exc`` raised on ``text`` -> a malformed-JSON error at its line and column, quoting the
    text there; ``shift``: characters added in front of the record before decoding."""
    record = text[shift:]
    at = min(max(exc.pos - shift, 0), len(record))
    lines_in, column = _position(record, at)
    early = "; the record ends early (truncated?)" if exc.pos >= len(text) - 1 else ""
    return BadFlowError("malformed", f"malformed JSON ({exc.msg}, column {column}{early}): {quote(record, at)}",
                        lines_in=lines_in)


def _loads(text: str, shift: int = 0) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(text, exc, shift) from None
    except RecursionError:
        raise BadFlowError("malformed", f"malformed JSON (nested too deeply): {quote(text[shift:])}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BadFlowError("malformed", f"unreadable JSON value ({excerpt(str(exc), 60)})") from None


@dataclass(frozen=True)
class FlowRecord:
    line: int  # 1-based line where the flow starts
    offset: int  # byte offset of the record in the file
    length: int  # bytes


def packets_from_rows(rows: Any, names: tuple[str, ...] | None = None) -> np.ndarray:
    """Validate a flow given as a list of per-packet feature lists -> float64 (packets, features).
    ``names``: what the features are called in the input, for messages.

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

    def where(i: int, j: int) -> str:
        return f"packet {i + 1}, {repr(names[j]) if names else f'feature {j + 1}'}"

    # numpy would read "1" as 1.0 and a nested array as a third dimension (which the packet cache
    # then wrote as more values than the index says): both refused, value by value.
    for i, packet in enumerate(rows):
        for j, value in enumerate(packet):
            if isinstance(value, str):
                raise BadFlowError("non_numeric", f"non-numeric feature value, the string {excerpt(repr(value), 40)}, "
                                   f"at {where(i, j)}")
            if isinstance(value, (list, dict)):
                raise BadFlowError("malformed", f"a nested {'array' if isinstance(value, list) else 'object'} "
                                   f"at {where(i, j)}")
    try:
        packets = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # an integer literal beyond float64
        raise BadFlowError("non_finite", "non-finite value: a number too large for float64") from None
    except (TypeError, ValueError):
        raise BadFlowError("non_numeric", "non-numeric feature value") from None
    finite = np.isfinite(packets)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        if rows[i][j] is None:  # numpy reads JSON null as NaN
            raise BadFlowError("non_numeric", f"null value at {where(i, j)}")
        raise BadFlowError("non_finite", f"non-finite value {packets[i, j]} at {where(i, j)}")
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
    packets = packets_from_rows([[t, d] for t, d in zip(times, signed)], names=("timestamp", "direction_length"))
    with np.errstate(over="ignore", invalid="ignore"):
        gaps = np.diff(packets[:, 0], prepend=packets[0, 0])
    if not np.isfinite(gaps).all():
        raise BadFlowError("non_finite", f"non-finite inter-arrival time at packet {int(np.argmax(~np.isfinite(gaps))) + 1}")
    if (gaps < 0).any():
        raise BadFlowError("malformed", f"timestamps go backwards at packet {int(np.argmax(gaps < 0)) + 1}")
    return np.stack([np.sign(packets[:, 1]), np.abs(packets[:, 1]), gaps], axis=1)


def _parse_csv_line_stdlib(raw: bytes) -> np.ndarray:
    """The reference parser (stdlib ``json``): slow, but it names every problem precisely."""
    return packets_from_rows(_loads("[" + check_bytes(raw) + "]", shift=1))


def _parse_flow_object_stdlib(raw: bytes) -> np.ndarray:
    return packets_from_flow_object(_loads(check_bytes(raw)))


def _simdjson_rows(raw: bytes) -> np.ndarray | None:
    """A seed-format line decoded by simdjson straight into float64 (packets, features), with
    no Python float made on the way; None unless it is certainly a good flow, i.e. unless
    ``packets_from_rows`` would return exactly this.

    simdjson is a strict JSON parser with correctly rounded numbers, as ``json`` is; it refuses
    NaN, Infinity, numbers beyond float64 and integers beyond 64 bits (the reference parser then
    decides). ``as_buffer`` flattens nested arrays, so a rectangle is checked here: every packet
    an array of the same length, and no '[' in the line beyond the packets' own (a string holding
    one fails the buffer's type check first)."""
    parser = getattr(_local, "parser", None) if len(raw) <= REUSED_PARSER_MAX_BYTES else simdjson.Parser()
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    try:
        rows = parser.parse(b"[" + raw + b"]")
    except (ValueError, TypeError, RuntimeError):
        return None
    try:  # a parser cannot parse again while an Array of its last document is alive: drop it in any case
        n = len(rows)
        if not isinstance(rows, simdjson.Array) or n == 0 or raw.count(b"[") != n:
            return None
        width = len(rows[0])
        if width == 0 or any(len(packet) != width for packet in rows):
            return None
        packets = np.frombuffer(rows.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, TypeError, RuntimeError):  # a packet that is not an array; a non-number
        return None
    finally:
        del rows
    return packets.reshape(n, width) if packets.size == n * width else None


def _parse_csv_line(raw: bytes) -> np.ndarray:
    """One seed-format line -> float64 (packets, features).

    simdjson decodes the line into doubles (about 2.5x orjson, which makes a Python float of
    every value); anything it refuses (NaN, Infinity, bad bytes, bad JSON) or that is not a clean
    rectangle of numbers goes through the stdlib parser, so every error keeps its exact reason
    and message."""
    packets = _simdjson_rows(raw)
    return _parse_csv_line_stdlib(raw) if packets is None else packets


def _parse_flow_object(raw: bytes) -> np.ndarray:
    try:
        flow = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _parse_flow_object_stdlib(raw)
    try:
        return packets_from_flow_object(flow)
    except BadFlowError:  # the same object through the reference path: the same message
        return _parse_flow_object_stdlib(raw)



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
        """The file's flows, in order; a problem with the file itself (compressed, or a .json
        array whose structure breaks) is raised from here, named by file and line."""
        if self._mm is None:
            return iter(())
        head = self._mm[:8]
        for magic, kind in _COMPRESSED.items():
            if head.startswith(magic):
                raise BadFlowError("compressed_file", f"{kind}-compressed data, not a {self.format} flow file: "
                                   f"decompress it first (first bytes {excerpt(head)})", self.path, 1)
        start = len(_BOM) if head.startswith(_BOM) else 0
        return self._json_array_records(start) if self.format == ".json" else self._line_records(start)

    def _line_records(self, start: int) -> Iterator[FlowRecord]:
        mm, pos, line, released = self._mm, start, 1, 0
        while pos < self.size:
            end = mm.find(b"\n", pos)
            end = self.size if end < 0 else end
            length = end - pos - (1 if end > pos and mm[end - 1] == 0x0D else 0)  # tolerate CRLF
            yield FlowRecord(line, pos, length)
            pos, line = end + 1, line + 1
            if pos - released >= _RELEASE_EVERY:
                self._release(released, pos)
                released = pos - pos % mmap.PAGESIZE

    def _json_array_records(self, start: int) -> Iterator[FlowRecord]:
        """Walk a JSON array object by object, decoding 1 MB windows of the mmap.

        Bytes are decoded as latin-1 so a character index equals a byte offset; JSON's
        structure is ASCII, and ``read`` decodes each record properly as UTF-8 later.
        """
        decoder, mm, lines = json.JSONDecoder(), self._mm, LineCounter()
        state = {"buf": "", "base": start}  # buf covers bytes [base, base + len(buf))

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

        def bad_bytes(pos: int, end: int) -> BadFlowError | None:
            """NUL bytes or invalid UTF-8 in buf[pos:end], as an error to raise; None if there are none."""
            raw = state["buf"][pos:end].encode("latin-1")
            try:
                check_bytes(raw, final=False)
            except BadFlowError as exc:
                return exc.located(self.path, line_at(pos))
            return None

        def refuse(reason: str, detail: str, pos: int) -> BadFlowError:
            return bad_bytes(pos, pos + _QUOTE_BYTES) or BadFlowError(
                reason, f"{detail}: {quote(state['buf'][pos : pos + _QUOTE_BYTES].encode('latin-1'))}",
                self.path, line_at(pos))

        pos = skip_space(0)
        if pos >= len(state["buf"]):
            raise BadFlowError("empty_file", "blank file: no flows", self.path, 1)
        if state["buf"][pos : pos + 1] != "[":
            raise refuse("malformed", "a .json flow file must hold a JSON array of flow objects", pos)
        def refuse_trailing(closing: int) -> None:
            """Nothing but space may follow the array's ']': junk, or a second array appended,
            whose flows would be lost unseen."""
            after = skip_space(closing + 1)
            if after < len(state["buf"]):
                raise refuse("malformed", "bytes after the closing ']' of the flows' array", after)

        pos = skip_space(pos + 1)
        if state["buf"][pos : pos + 1] == "]":
            refuse_trailing(pos)
            return
        while True:
            if pos >= len(state["buf"]):
                raise BadFlowError("truncated_file", "the JSON array ends before its closing ']' "
                                   "(a truncated or unfinished copy?)", self.path, line_at(pos))
            while True:
                try:
                    _, end = decoder.raw_decode(state["buf"], pos)
                    break
                except RecursionError:
                    raise BadFlowError("malformed", "malformed JSON (nested too deeply) in the flow starting on line "
                                       f"{line_at(pos)}", self.path, line_at(pos)) from None
                except json.JSONDecodeError as exc:
                    # Read on only when the error is where the window ends (a record it cut): an
                    # error well inside it is real, and reading on would pull the rest of the file
                    # into memory.
                    near_end = exc.pos >= len(state["buf"]) - _JSON_RECORD_TAIL
                    if not (near_end and fill()):  # the error is real, not a record cut by the window
                        line = line_at(pos)
                        if exc.pos >= len(state["buf"]):
                            raise BadFlowError("truncated_file", f"the file ends inside the flow that starts on line "
                                               f"{line} (a truncated or unfinished copy?)", self.path, line) from None
                        found = bad_bytes(pos, exc.pos + 1)
                        if found is not None:
                            raise found from None
                        lines_in, column = _position(state["buf"], exc.pos)
                        lines_in -= state["buf"].count("\n", 0, pos)
                        near = state["buf"][max(exc.pos - _QUOTE_BEFORE, 0) : exc.pos + _QUOTE_BYTES]
                        raise BadFlowError("malformed", f"malformed JSON ({exc.msg}, column {column}) in the flow "
                                           f"starting on line {line}: {quote(near.encode('latin-1'))}",
                                           self.path, line + lines_in) from None
                except ValueError as exc:  # e.g. an integer of more than 4300 digits
                    raise BadFlowError("malformed", f"unreadable JSON value ({excerpt(str(exc), 60)}) in the flow "
                                       f"starting on line {line_at(pos)}", self.path, line_at(pos)) from None
            yield FlowRecord(line_at(pos), state["base"] + pos, end - pos)
            pos = skip_space(end)
            separator = state["buf"][pos : pos + 1]
            if separator == "]":
                refuse_trailing(pos)
                return
            if separator == "":
                raise BadFlowError("truncated_file", "the JSON array ends before its closing ']' "
                                   "(a truncated or unfinished copy?)", self.path, line_at(pos))
            if separator != ",":
                raise refuse("malformed", "expected ',' or ']' between flows", pos)
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
            if record.line == 1 and exc.reason == "malformed" and raw[:1].isalpha():
                exc = BadFlowError(exc.reason, exc.detail + f" (a header line? {self.format} flow files have none)",
                                   lines_in=exc.lines_in)
            raise exc.located(self.path, record.line) from None


@dataclass
class FlowIndex:
    """What a scan of some files found: one row per usable flow, and what was skipped."""

    frame: pl.DataFrame
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)
    # each file's (size, mtime) taken before it was read, and unchanged after: the landing fingerprint's input
    states: dict[Path, tuple[int, int]] = field(default_factory=dict)

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


def refuse_outside(files: list[Path], root: Path) -> None:
    """Refuse, by name and without reading it, a file whose resolved path leaves the landing root."""
    for path in files:
        if not inside_root(path, root):
            raise RefusedFileError(f"{path}: leads outside the landing root {root} (resolves to {path.resolve()}); "
                                   "refused, not read")


def index_files(files: list[Path], root: Path, skip_bad: bool = False, cache: Path | None = None) -> FlowIndex:
    """Scan files flow by flow; ``source_file`` is stored relative to ``root`` (the landing folder).

    Every flow is parsed once, so bad input is found here, before anything trains on it. All
    flows of the scanned files must share one packet dimension (a model has one input width).
    Files leading outside ``root`` are refused before any is read; a file that changed while it
    was read fails the whole scan (``RefusedFileError``), so nothing half-read is stored.

    ``cache``: a folder where the packets parsed here are written, one binary cache per file
    (``traffic.cache``), so training reads them memory-mapped instead of parsing the text again;
    a file's cache is committed only when that file did not change while it was read.
    """
    refuse_outside(files, root)
    states = file_states(files)
    try:
        index = _index(files, root, states, skip_bad, cache)
    except BadFlowError as exc:
        _refuse_changed(states, exc)  # bad bytes in a file still being written: say that, not the bytes
        raise
    _refuse_changed(states)
    index.states = states
    return index


def _refuse_changed(states: dict[Path, tuple[int, int]], cause: BaseException | None = None) -> None:
    changed = changed_since(states)
    if changed:
        raise RefusedFileError(
            f"{', '.join(map(str, changed))}: changed while it was read (size or modification time differ "
            "before and after); nothing stored: materialise the partition again once the file is complete"
        ) from cause


def _index(files: list[Path], root: Path, states: dict[Path, tuple[int, int]], skip_bad: bool,
           cache: Path | None = None) -> FlowIndex:
    columns: dict[str, list] = {name: [] for name in _INDEX_SCHEMA}
    skipped: Counter = Counter()
    examples: list[str] = []
    width_seen: tuple[int, str] | None = None

    def skip(exc: BadFlowError, note: str = "") -> None:
        if not skip_bad:
            raise exc
        skipped[exc.reason] += 1
        if len(examples) < MAX_EXAMPLES:
            examples.append(f"{exc}{note}")

    def index_file(path: Path, flow_file: FlowFile, writer) -> int | None:
        """The file's flows into ``columns`` (and ``writer``); how many records it held, None when
        the file itself broke off (the rest of it skipped)."""
        nonlocal width_seen
        size, mtime_ns = states[path]
        relative = path.relative_to(root).as_posix()
        seen = 0
        try:
            for record in flow_file.records():
                seen += 1
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
                    skip(exc)
                    continue
                if writer is not None:
                    writer.add(record.line, record.offset, record.length, packets)
                for name, value in zip(
                    _INDEX_SCHEMA,
                    (relative, flow_file.format.lstrip("."), size, mtime_ns, record.line,
                     record.offset, record.length, packets.shape[0], packets.shape[1]),
                ):
                    columns[name].append(value)
        except BadFlowError as exc:  # the file itself is unusable from here on
            skip(exc, "; the rest of the file is skipped")
            return None
        return seen

    for path in files:
        size, mtime_ns = states[path]
        if size == 0:  # a capture that wrote nothing: say which file, not just "no rows"
            skip(BadFlowError("empty_file", "empty file (0 bytes): no flows", path, 1))
            continue
        writer = None
        if cache is not None:
            from netassets.traffic.packet_file import CacheWriter, cache_path

            writer = CacheWriter(cache_path(cache, path.relative_to(root).as_posix()), path, (size, mtime_ns))
        try:
            with FlowFile(path) as flow_file:
                seen = index_file(path, flow_file, writer)
            if writer is not None:
                if changed_since({path: (size, mtime_ns)}):
                    writer.abort()  # the scan is refused as a whole afterwards
                else:
                    writer.commit()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if seen == 0:  # not None: a broken file was counted under its own reason
            skip(BadFlowError("empty_file", "no flows in the file (blank, or an empty JSON array)", path, 1))
    frame = pl.DataFrame(columns, schema=_INDEX_SCHEMA)
    if frame.is_empty():
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        raise BadFlowError("no_flows", f"no usable flows in {len(files)} file(s) ({', '.join(map(str, files))}): "
                           f"{sum(skipped.values())} skipped ({reasons}); first: {'; '.join(examples[:3])}")
    return FlowIndex(frame, skipped, examples)


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
