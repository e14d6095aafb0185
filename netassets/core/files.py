"""Files: writing those other processes read all at once or not at all; checking input headers.

A reader (a running asset, a sensor scanning the landing folder, a resumed training run)
sees the old file or the new one, never half of one: the bytes go to a hidden sibling with a
name of its own (``.name.<random>.tmp``, which no landing glob matches), are flushed to disk,
and renamed over the target; then the folder is synced so the rename survives a crash. Two
processes writing the same target never share a temporary file: the last rename wins whole.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is as readable as any other output
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_json(path: Path, value: Any) -> Path:
    return atomic_write(path, lambda handle: handle.write(json.dumps(value, indent=1).encode()))


def copy_file(source: Path, target: Path) -> Path:
    def copy(handle: BinaryIO) -> None:
        with source.open("rb") as original:
            shutil.copyfileobj(original, handle)

    return atomic_write(target, copy)


EXCERPT_CHARS = 80


def excerpt(raw: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped quote of input for an error message: never more than ``limit`` characters
    of the input, control and binary bytes escaped, so junk cannot flood a log."""
    # bytes: anything outside ASCII is escaped, even where it happens to be valid UTF-8 (a gzip
    # header's timestamp can be), so binary input never reaches a log as raw characters
    text = raw.decode("ascii", "backslashreplace") if isinstance(raw, bytes) else raw
    quoted = repr(text[:limit])
    return quoted + (f" ... ({len(text) - limit} more characters)" if len(text) > limit else "")


def header_mismatch(path: Path, found: Sequence[str], expected: Sequence[str], ordered: bool = True) -> str | None:
    """'<path>: line 1: header [...] does not match [...]; missing [...]; unexpected [...]', or None if it matches."""
    if (list(found) == list(expected)) if ordered else (sorted(found) == sorted(expected)):
        return None
    missing = [c for c in expected if c not in found]
    unexpected = [c for c in found if c not in expected]
    def shown(names: Sequence[str]) -> str:  # a binary "header" is quoted short and escaped, never whole
        return excerpt(",".join(names)) if sum(map(len, names)) > EXCERPT_CHARS else str(list(names))

    return (f"{path}: line 1: header {shown(found)} does not match {list(expected)}"
            + (f"; missing {missing}" if missing else "") + (f"; unexpected {shown(unexpected)}" if unexpected else ""))


def undecodable_line(path: Path) -> str | None:
    """'line N: not UTF-8 text (...)' for the first line of ``path`` that does not decode."""
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {line_number}: not UTF-8 text (byte {raw[exc.start]:#04x} at column {exc.start + 1})"
    return None


def ragged_row(path: Path) -> str | None:
    """'line N: M fields, the header has K' for the first CSV row of another width than the header
    (N is the line the row ends on, as the CSV reader counts them: a quoted newline counts)."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = csv.reader(handle)
        width = len(next(rows, []))
        for row in rows:
            if row and len(row) != width:
                return f"line {rows.line_num}: {len(row)} fields, the header has {width}"
    return None


def file_states(files: Sequence[Path]) -> dict[Path, tuple[int, int]]:
    """(size, mtime in ns) of each file: taken before and after reading, a difference means the
    file was still being written while it was read."""
    states = {}
    for path in files:
        stat = path.stat()
        states[path] = (stat.st_size, stat.st_mtime_ns)
    return states


def changed_since(states: dict[Path, tuple[int, int]]) -> list[Path]:
    return [path for path, state in states.items() if not path.exists() or file_states([path])[path] != state]


def inside_root(path: Path, root: Path) -> bool:
    """Whether ``path``, with every link followed, lies under ``root``: landing files that lead
    elsewhere are refused by name, without being read."""
    return path.resolve().is_relative_to(root.resolve())

