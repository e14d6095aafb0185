"""Training's view of the packet caches (``packet_file``): build a missing or stale one once,
read every flow of a split memory-mapped, and notice a landing file that changed mid-training.
Above both ``packet_file`` and ``readers`` (it rebuilds through the text parser), so neither
imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import polars as pl

from netassets.traffic.packet_file import CacheWriter, PacketCache, cache_path, open_fresh


def build(source: Path, target: Path, fingerprint: tuple[int, int], n_features: int | None = None) -> Path:
    """Parse ``source`` once and cache every usable flow (of ``n_features`` when given): what
    training does when a cache is missing or stale. Bad flows are left out, as ``skip_bad``
    indexing leaves them out; a flow training needs that is not there is reported by name."""
    from netassets.core.files import changed_since
    from netassets.traffic.readers import BadFlowError, FlowFile

    with CacheWriter(target, source, fingerprint) as writer:
        if fingerprint[0]:
            with FlowFile(source) as flow_file:
                try:
                    for record in flow_file.records():
                        try:
                            packets = flow_file.read(record)
                        except BadFlowError:
                            continue
                        if n_features is None:
                            n_features = packets.shape[1]
                        if packets.shape[1] == n_features:
                            writer.add(record.line, record.offset, record.length, packets)
                except BadFlowError:  # the rest of the file is unusable; what came before is cached
                    pass
        if changed_since({Path(source): tuple(fingerprint)}):
            raise RuntimeError(f"{source} changed while its packet cache was built; re-materialise its "
                               "traffic_flows partition")
        return writer.commit()


class CachedFlows:
    """The flows of an index, read from their packet caches (built once where missing or
    stale); ``flows[i]`` is the float64 (packets, features) of the index's row ``i``. A context
    manager that unmaps the caches on exit."""

    def __init__(self, index: pl.DataFrame, landing: Path, cache_root: Path):
        self._caches: list[PacketCache] = []
        self._sources: list[tuple[Path, tuple[int, int]]] = []
        self._landing = Path(landing)
        self.rebuilt: list[Path] = []
        try:
            self._open(index, Path(landing), Path(cache_root))
        except BaseException:
            self.close()
            raise

    def _open(self, index: pl.DataFrame, landing: Path, cache_root: Path) -> None:
        n_features = int(index["n_features"][0]) if len(index) else None
        files = index.select("source_file", "file_size", "file_mtime_ns").unique(maintain_order=True)
        number: dict[str, int] = {}
        for name, size, mtime in files.iter_rows():
            path, fingerprint = landing / name, (int(size), int(mtime))
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) != fingerprint:
                raise RuntimeError(f"{path} changed since it was indexed; re-materialise its traffic_flows partition")
            target = cache_path(cache_root, name)
            cache = open_fresh(target, path, fingerprint)
            if cache is None:  # missing or stale: parsed once here, never per epoch
                build(path, target, fingerprint, n_features)
                self.rebuilt.append(target)
                cache = PacketCache(target)
            number[name] = len(self._caches)
            self._caches.append(cache)
            self._sources.append((path, fingerprint))
        rows = index.select("source_file", "line_no", "byte_offset").rows()
        self._file = np.empty(len(rows), dtype=np.int32)
        self._start = np.empty(len(rows), dtype=np.int64)
        self._count = np.empty(len(rows), dtype=np.int64)
        at_offset = [dict(zip(c.records[:, 1].tolist(), range(len(c)))) for c in self._caches]
        for i, (name, line, offset) in enumerate(rows):
            k = number[name]
            j = at_offset[k].get(offset)
            if j is None or self._caches[k].n_features != n_features:
                raise RuntimeError(f"{landing / name}:{line}: flow not in its packet cache {self._caches[k].path} "
                                   "(bad now, or of another width); re-materialise its traffic_flows partition")
            self._file[i], self._start[i], self._count[i] = k, self._caches[k].records[j, 3], self._caches[k].records[j, 4]

    def check_unchanged(self) -> None:
        """Refuse to go on when a landing file changed since it was indexed (one stat per file, no
        parsing; training calls it each epoch). The changed file is scanned once to say what is
        wrong with it now (the bad flow by file and line), else that it changed."""
        from netassets.core.files import file_states
        from netassets.traffic.readers import index_files

        for path, fingerprint in self._sources:
            if not path.exists() or file_states([path])[path] != fingerprint:
                if path.exists():
                    index_files([path], self._landing)  # raises the named BadFlowError, if any
                raise RuntimeError(f"{path} changed since it was indexed; re-materialise its traffic_flows partition")

    def close(self) -> None:
        for cache in self._caches:
            cache.close()

    def __enter__(self) -> "CachedFlows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._file)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._caches[self._file[i]].rows(int(self._start[i]), int(self._count[i]))

    @property
    def paths(self) -> list[Path]:
        return [c.path for c in self._caches]


def ensure(index: pl.DataFrame, landing: Path, cache_root: Path) -> list[Path]:
    """Build the caches an index needs that are missing or stale (before training starts, so
    every rank finds them); returns those rebuilt."""
    with CachedFlows(index, landing, cache_root) as flows:
        return flows.rebuilt


def paths_of(index: pl.DataFrame, cache_root: Path) -> Iterable[Path]:
    return [cache_path(cache_root, name) for name in index["source_file"].unique(maintain_order=True)]
