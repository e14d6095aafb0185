"""Packet cache: the flows of a landing file parsed once, kept as float64 binary, read memory-mapped.

``traffic_flows`` parses every flow while indexing (that is how bad input is found); with
this cache the packets it parsed are written out as they come, so training reads them back
memory-mapped and an epoch never parses text. One cache file per landing file::

    $NETASSETS_HOME/cache/traffic/<site>/<YYYY-MM-DD>/<file name>.packets

Layout (little-endian): the packets of every cached flow, float64, C order (packets x
features), one flow after the other; then one int64 row per flow (line, byte offset, byte
length, first packet row, packet count); then a JSON header; then the header's length (8
bytes) and the magic ``NAPKTC01``. The header holds the landing file's resolved path and its
fingerprint (size, mtime in ns, as ``core.files.file_states`` takes it): a cache whose
fingerprint differs from the landing file's is stale and is not used; it is rebuilt once.

Written to a hidden temporary sibling and renamed over the target (as ``core.files.atomic_write``
does), and only when the landing file did not change while it was read: a reader sees a
whole cache or none. Reading copies one flow out of the map at a time and releases the
mapped pages every ``RELEASE_EVERY`` bytes, so a pass over a cache larger than memory keeps
the resident set small.
"""

from __future__ import annotations

import json
import mmap
import os
import tempfile
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from netassets.core.settings import netassets_home

MAGIC = b"NAPKTC01"
VERSION = 1
SUFFIX = ".packets"
RELEASE_EVERY = 32 << 20  # bytes copied out of a map between two madvise(MADV_DONTNEED)
_TRAILER = 8 + len(MAGIC)
_RECORD_COLUMNS = ("line", "byte_offset", "byte_length", "row_start", "n_packets")


def cache_dir() -> Path:
    """Where ``traffic_flows`` keeps the packet caches (NETASSETS_HOME may change between runs)."""
    return netassets_home() / "cache" / "traffic"


def cache_path(cache_root: Path, source_file: str) -> Path:
    """The cache of the landing file ``source_file`` (relative to the landing root, as indexed)."""
    relative = Path(source_file)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"source_file {source_file!r} must be a path inside the landing root")
    return Path(cache_root) / relative.parent / (relative.name + SUFFIX)



# A temporary cache file untouched this long was left by a writer that was killed: a live
# writer appends to its file flow by flow.
ABANDONED_AFTER_S = 600


def remove_orphans(directory: Path, keep: Iterable[Path]) -> list[Path]:
    """Remove the caches in ``directory`` (a partition's ``<site>/<day>``) that are not in ``keep``
    (the caches of the files landed there now): their landing file was deleted or renamed, so
    no index can reach them again; and the temporary files of writers killed mid-write (up to a
    whole cache each). Returns what was removed."""
    keep = set(keep)
    orphans = sorted(path for path in Path(directory).glob(f"*{SUFFIX}") if path not in keep)
    abandoned_before = time.time() - ABANDONED_AFTER_S
    for path in Path(directory).glob(f".*{SUFFIX}.*.tmp"):
        try:
            if path.stat().st_mtime < abandoned_before:
                orphans.append(path)
        except FileNotFoundError:  # committed or aborted meanwhile
            continue
    for path in orphans:
        path.unlink(missing_ok=True)
    return orphans


class CacheWriter:
    """Packets of one landing file appended flow by flow to a temporary file, renamed into
    place by ``commit``; ``abort`` (or an exception in a ``with`` block) leaves nothing."""

    def __init__(self, target: Path, source: Path, fingerprint: tuple[int, int]):
        self.target, self.source, self.fingerprint = Path(target), Path(source), tuple(fingerprint)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent)
        self._tmp = Path(name)
        self._handle = os.fdopen(descriptor, "wb")
        self._records: list[tuple[int, int, int, int, int]] = []
        self._rows, self._width = 0, None

    def add(self, line: int, byte_offset: int, byte_length: int, packets: np.ndarray) -> None:
        if self._width is None:
            self._width = packets.shape[1]
        elif packets.shape[1] != self._width:
            raise ValueError(f"{self.source}:{line}: {packets.shape[1]} features in a cache of {self._width}")
        self._handle.write(np.ascontiguousarray(packets, dtype="<f8").tobytes())
        self._records.append((line, byte_offset, byte_length, self._rows, packets.shape[0]))
        self._rows += packets.shape[0]

    def commit(self) -> Path:
        try:
            records = np.asarray(self._records, dtype="<i8").reshape(-1, len(_RECORD_COLUMNS))
            header = json.dumps({
                "version": VERSION, "source": str(self.source.resolve()), "size": self.fingerprint[0],
                "mtime_ns": self.fingerprint[1], "n_flows": len(records), "n_packets": self._rows,
                "n_features": self._width or 0, "dtype": "<f8", "records_offset": self._rows * (self._width or 0) * 8,
                "record_columns": list(_RECORD_COLUMNS),
            }).encode()
            self._handle.write(records.tobytes())
            self._handle.write(header)
            self._handle.write(len(header).to_bytes(8, "little") + MAGIC)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.target)
        except BaseException:
            self.abort()
            raise
        descriptor = os.open(self.target.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return self.target

    def abort(self) -> None:
        self._handle.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, kind, *exc) -> None:
        if kind is not None:
            self.abort()


class PacketCache:
    """A read-only map of one cache file: ``flow(i)`` copies flow ``i`` out (float64)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            size = handle.seek(0, 2)
            if size < _TRAILER:
                raise ValueError(f"{self.path}: not a packet cache (too short)")
            handle.seek(size - _TRAILER)
            trailer = handle.read(_TRAILER)
            if trailer[8:] != MAGIC:
                raise ValueError(f"{self.path}: not a packet cache (no magic)")
            length = int.from_bytes(trailer[:8], "little")
            handle.seek(size - _TRAILER - length)
            self.header = json.loads(handle.read(length))
            if self.header.get("version") != VERSION:
                raise ValueError(f"{self.path}: packet cache version {self.header.get('version')}, expected {VERSION}")
            self._mm = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        n_flows, offset = self.header["n_flows"], self.header["records_offset"]
        self.n_features = int(self.header["n_features"])
        self.records = np.frombuffer(self._mm, dtype="<i8", count=n_flows * len(_RECORD_COLUMNS),
                                     offset=offset).reshape(n_flows, -1).copy()
        self._touched = 0

    def fresh_for(self, source: Path, fingerprint: tuple[int, int]) -> bool:
        """Whether this cache was built from ``source`` as it is at ``fingerprint`` (size, mtime_ns)."""
        return (self.header["source"] == str(Path(source).resolve())
                and (self.header["size"], self.header["mtime_ns"]) == tuple(fingerprint))

    def __len__(self) -> int:
        return len(self.records)

    def flow(self, i: int) -> np.ndarray:
        _, _, _, start, n = self.records[i]
        return self.rows(int(start), int(n))

    def rows(self, start: int, n: int) -> np.ndarray:
        count = n * self.n_features
        packets = np.frombuffer(self._mm, dtype="<f8", count=count, offset=start * self.n_features * 8)
        packets = packets.reshape(n, self.n_features).astype(np.float64, copy=True)
        self._touched += count * 8
        if self._touched >= RELEASE_EVERY:  # mapped pages count in the resident set until released
            self._mm.madvise(mmap.MADV_DONTNEED)
            self._touched = 0
        return packets

    def close(self) -> None:
        self._mm.close()

    def __enter__(self) -> "PacketCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_fresh(path: Path, source: Path, fingerprint: tuple[int, int]) -> PacketCache | None:
    """The cache at ``path`` if it exists, is whole and was built from ``source`` at ``fingerprint``."""
    try:
        cache = PacketCache(path)
    except (OSError, ValueError, KeyError):  # missing, half a file from an older layout, not a cache
        return None
    if cache.fresh_for(source, fingerprint):
        return cache
    cache.close()
    return None
