"""Great Expectations suite on each traffic_flows partition (blocks traffic_lstm when it fails).
traffic_lstm's ``beats_strongest_baseline`` check is reported by the asset itself (assets.py)."""

from __future__ import annotations

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.partitions import parse_partition_key
from netassets.defs.traffic.assets import traffic_flows
from netassets.defs.traffic.pipeline import PIPELINE


def _load(warehouse, partition_key):
    partition = parse_partition_key(partition_key, PIPELINE.dimension)
    return warehouse.read_partition("traffic_flows", {"day": partition.day, "site": partition.other}).to_pandas()


def _expectations(frame):
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="n_packets", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="n_features", min_value=1),
        # one model input width per partition: index_files refuses mixed dimensions
        gxe.ExpectColumnUniqueValueCountToBeBetween(column="n_features", min_value=1, max_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="byte_length", min_value=2),
        gxe.ExpectColumnValuesToBeBetween(column="line_no", min_value=1),
        # the byte offset, not the line: a minified .json holds every flow on line 1
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["source_file", "byte_offset"]),
        gxe.ExpectColumnValuesToBeInSet(column="file_format", value_set=["csv", "json", "jsonl"]),
    ]


traffic_flows_gx_expectations = gx_partition_check(
    asset=traffic_flows,
    name="gx_expectations",
    description="Every flow has packets and one packet dimension; (file, byte offset) identifies a flow once.",
    partitions_def=PIPELINE.partitions,
    load=_load,
    expectations=_expectations,
)
