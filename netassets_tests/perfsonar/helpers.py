"""Materialising perfSONAR assets in process against the test cluster and DuckDB file."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg

from netassets.pipelines import pipeline

PERFSONAR = pipeline("perfsonar")


def materialize(assets, partition_key: str, instance, warehouse, search, run_config=None, raise_on_error=True):
    source = partition_key.split("|")[1]
    if source not in instance.get_dynamic_partitions(PERFSONAR.dynamic.name):
        PERFSONAR.register(instance, [source])
    return dg.materialize(
        assets, partition_key=partition_key, instance=instance, run_config=run_config,
        resources={"warehouse": warehouse, "perfsonar_search": search}, raise_on_error=raise_on_error,
    )


def metadata(result, asset_name: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset_name]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def failure_message(result) -> str:
    return "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


def expected_cells(documents, day: dt.date, dest_field: str) -> dict:
    """Independent of the SQL: walk documents in time order, later ones overwrite their minute."""
    cells = {}
    for doc in sorted(documents, key=lambda d: (d["timestamp"], d["_id"])):
        t = dt.datetime.fromtimestamp(doc["timestamp"] / 1000, dt.timezone.utc).replace(tzinfo=None)
        if t.date() == day and 0 <= doc["packet_loss"] <= 1:
            cells[(t.replace(second=0, microsecond=0), doc[dest_field])] = doc["packet_loss"]
    return cells


def table_cells(warehouse, source: str, day: dt.date) -> dict:
    rows = warehouse.query("SELECT minute, destination, packet_loss FROM perfsonar_packet_loss WHERE day = $d AND"
                           " source = $s", {"d": day, "s": source}).rows()
    return {(m, dest): loss for m, dest, loss in rows}


def connections_to(url: str) -> int:
    """TCP sockets this process holds open to ``url`` (Linux /proc), in any state: an OpenSearch
    client that was not closed keeps its pooled keep-alive connection after a request."""
    port = urlsplit(url).port
    sockets = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
        if target.startswith("socket:["):
            sockets.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()  # local_address rem_address st ... inode (10th)
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in sockets:
                count += 1
    return count
