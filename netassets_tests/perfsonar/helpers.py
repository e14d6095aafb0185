"""Materialising perfSONAR assets in process against the test cluster and DuckDB file."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from netassets.perfsonar.partitions import perfsonar_sources_name


def materialize(assets, partition_key: str, instance, warehouse, search, run_config=None, raise_on_error=True):
    source = partition_key.split("|")[1]
    if source not in instance.get_dynamic_partitions(perfsonar_sources_name):
        instance.add_dynamic_partitions(perfsonar_sources_name, [source])
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
