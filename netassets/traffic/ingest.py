"""One ``traffic_flows`` partition: the landed flow files of a day and site indexed into rows
(one per flow, with its packet count) and the figures the materialisation reports. The packets
parsed while indexing are written once into the binary packet cache (``traffic.cache``) that
training reads memory-mapped."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from netassets.core.settings import landing_dir
from netassets.traffic.packet_file import cache_dir, cache_path, remove_orphans
from netassets.traffic.readers import FlowIndex, index_files, landing_files

WARN_EXAMPLES = 5  # skipped flows named in the log warning (the metadata keeps up to readers.MAX_EXAMPLES)


@dataclass(frozen=True)
class PartitionIndex:
    files: list[Path]
    index: FlowIndex
    frame: pl.DataFrame  # the index's rows with the partition's day and site: what the table stores
    removed_caches: list[Path]  # caches of landing files deleted since they were built

    @property
    def skipped_warning(self) -> str | None:
        """The log line for bad flows left out (None when none was)."""
        skipped = self.index.skipped
        if not skipped:
            return None
        shown = self.index.skipped_examples[:WARN_EXAMPLES]
        return (f"skipped {sum(skipped.values())} bad flows ("
                + ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
                + f"); first {len(shown)}: " + "; ".join(shown))

    def summary(self) -> dict[str, Any]:
        """Plain figures of the partition (the asset adds the table's own catalog metadata)."""
        packets = self.index.frame["n_packets"]
        return {
            "files": len(self.files),
            "packets": int(packets.sum()),
            "features_per_packet": self.index.n_features,
            "packets_per_flow_median": float(packets.median()),
            "packets_per_flow_max": int(packets.max()),
            "skipped_flows": sum(self.index.skipped.values()),
            "skipped_by_reason": dict(self.index.skipped),
            "orphan_caches_removed": len(self.removed_caches),
        }


def index_partition(day: dt.date, site: str, skip_bad: bool) -> PartitionIndex:
    """The flows of landing/traffic/<site>/<day>/*.{csv,json,jsonl}; no files is an error."""
    root = landing_dir("traffic")
    files = landing_files(root, day, site)
    if not files:
        raise FileNotFoundError(f"no .csv/.json/.jsonl flow files in {root / site / day.isoformat()}")
    index = index_files(files, root, skip_bad=skip_bad, cache=cache_dir())
    caches = [cache_path(cache_dir(), path.relative_to(root).as_posix()) for path in files]
    removed = remove_orphans(caches[0].parent, caches)
    return PartitionIndex(files, index, index.frame.with_columns(day=pl.lit(day), site=pl.lit(site)), removed)
