"""Great Expectations checks on the device-load tables, one partition at a time.

The model's check (``beats_strongest_baseline``) is declared with ``device_load_model`` in
``assets.py``: the asset yields it, so the verdict shows even when the promotion refuses.
"""

from __future__ import annotations

import dagster as dg

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.partitions import parse_partition_key
from netassets.defs.device_load.assets import device_load_anomalies, device_load_raw
from netassets.defs.device_load.pipeline import PIPELINE
from netassets.device_load.features import router_gaps

RAW_COLUMNS = ["day", "region", "router", "hostname", "ifname", "timeslot",
               "max_metric_value", "mean_metric_value", "source_file", "source_line"]
GAP_TOLERANCE_MINUTES = 120  # one missing hourly sample is tolerated, a longer hole is reported
ANOMALY_RATE_BOUNDS = (0.0, 0.2)


def _partition(table: str):
    def load(warehouse, partition_key):
        p = parse_partition_key(partition_key, PIPELINE.dimension)
        return warehouse.read_partition(table, {"day": p.day, "region": p.other}).to_pandas()
    return load


def _gaps(warehouse, partition_key):
    p = parse_partition_key(partition_key, PIPELINE.dimension)
    return router_gaps(warehouse, p.day, p.other).to_pandas()


raw_gx_expectations = gx_partition_check(
    asset=device_load_raw, name="gx_expectations", partitions_def=PIPELINE.partitions,
    description="The raw table has exactly the expected columns, keys are never null, the partition is not "
                "empty, both metrics are >= 0, and there is exactly one row per (router, timeslot).",
    load=_partition("device_load_raw"),
    expectations=lambda df: [
        gxe.ExpectTableColumnsToMatchSet(column_set=RAW_COLUMNS, exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("router", "timeslot", "max_metric_value", "mean_metric_value")],
        *[gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in ("max_metric_value", "mean_metric_value")],
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["router", "timeslot"]),
    ],
)

raw_gaps = gx_partition_check(
    asset=device_load_raw, name="gaps_within_tolerance", partitions_def=PIPELINE.partitions,
    description=f"Reports holes longer than {GAP_TOLERANCE_MINUTES} minutes in a router's series (warning; "
                "windows never span a hole, so a gap costs predictions, not correctness).",
    load=_gaps,
    expectations=lambda df: [gxe.ExpectColumnValuesToBeBetween(column="gap_minutes", max_value=GAP_TOLERANCE_MINUTES)],
    blocking=False, severity=dg.AssetCheckSeverity.WARN,
)

anomaly_rate = gx_partition_check(
    asset=device_load_anomalies, name="anomaly_rate", partitions_def=PIPELINE.partitions,
    description=f"Share of points labelled anomalous within {ANOMALY_RATE_BOUNDS} (warning: a high rate means "
                "drift or a stale model, not bad data).",
    load=lambda warehouse, key: _partition("device_load_anomalies")(warehouse, key).astype({"is_anomaly": float}),
    expectations=lambda df: [gxe.ExpectColumnMeanToBeBetween(
        column="is_anomaly", min_value=ANOMALY_RATE_BOUNDS[0], max_value=ANOMALY_RATE_BOUNDS[1])],
    blocking=False, severity=dg.AssetCheckSeverity.WARN,
)
