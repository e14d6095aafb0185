"""DWCP asset checks: GX on each raw partition; sanity of the windows; the ONNX candidate's gates."""

import dagster as dg
import numpy as np

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.partitions import parse_partition_key
from netassets.dwcp import artifacts
from netassets.dwcp.assets import PARTITIONS, dwcp_bandwidth_lstm, dwcp_onnx, dwcp_raw, dwcp_windows
from netassets.dwcp.gates import GATES
from netassets.dwcp.schema import BOUNDS, CATEGORIES, COLUMNS, DIMENSION
from netassets.dwcp.windows import SPLITS, Windows


def _raw_partition(warehouse, partition_key):
    part = parse_partition_key(partition_key, DIMENSION)
    return warehouse.read_partition("dwcp_raw", {"day": part.day, "region": part.other}).to_pandas()


def _raw_expectations(frame):
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in COLUMNS),
        *(gxe.ExpectColumnValuesToBeInSet(column=c, value_set=list(v)) for c, v in CATEGORIES.items()),
        *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi)
          for c, (lo, hi) in BOUNDS.items()),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["node_id", "peer_id", "timestamp"]),
    ]


dwcp_raw_valid = gx_partition_check(
    asset=dwcp_raw, name="dwcp_raw_valid", partitions_def=PARTITIONS, load=_raw_partition,
    expectations=_raw_expectations,
    description="GX: documented categories, throughput >= 0, packet_loss in [0, 1], one row per link and minute.",
)


@dg.asset_check(asset=dwcp_windows, blocking=True, description="Every split holds windows; no NaN or infinity.")
def dwcp_windows_usable() -> dg.AssetCheckResult:
    windows = Windows.load(artifacts.windows_path())
    counts = {s: int((windows.split == i).sum()) for i, s in enumerate(SPLITS)}
    finite = bool(np.isfinite(windows.x).all() and np.isfinite(windows.y).all())
    return dg.AssetCheckResult(passed=finite and min(counts.values()) > 0,
                               metadata={**{f"windows_{s}": n for s, n in counts.items()}, "all_finite": finite})


@dg.asset_check(asset=dwcp_bandwidth_lstm, description="WARN when the model does not beat its strongest baseline on test.")
def dwcp_bandwidth_lstm_beats_baselines() -> dg.AssetCheckResult:
    evaluation = artifacts.load_evaluation(artifacts.latest_run())
    if evaluation is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   description="the latest training run recorded no evaluation")
    return evaluation.check_result()


def _gate_check(name: str) -> dg.AssetChecksDefinition:
    gate, description = GATES[name]

    @dg.asset_check(asset=dwcp_onnx, name=name, blocking=True, description=description)
    def _check() -> dg.AssetCheckResult:
        candidate = artifacts.load_candidate()
        problems, metadata = gate(candidate)
        return dg.AssetCheckResult(passed=not problems, metadata={
            **metadata, "onnx": str(candidate.onnx), "problems": "\n".join(problems) or "none"})

    return _check


onnx_gates = [_gate_check(name) for name in GATES]
checks = [dwcp_raw_valid, dwcp_windows_usable, dwcp_bandwidth_lstm_beats_baselines, *onnx_gates]
