"""DWCP asset checks: GX on each raw partition; sanity of the windows; the ONNX candidate's gates.
The ``beats_strongest_baseline`` checks of dwcp_bandwidth_lstm and dwcp_report are reported by
the assets themselves (assets.py)."""

import dagster as dg

from netassets.core.expectations import gx_partition_check, gxe
from netassets.core.metadata import shown
from netassets.core.partitions import parse_partition_key
from netassets.defs.dwcp.assets import VERDICT_CHECK, dwcp_onnx, dwcp_onnx_production, dwcp_raw, dwcp_windows
from netassets.defs.dwcp.pipeline import PIPELINE
from netassets.dwcp import runs
from netassets.dwcp.gates import GATES
from netassets.dwcp.schema import BOUNDS, CATEGORIES, COLUMNS


def _raw_partition(warehouse, partition_key):
    part = parse_partition_key(partition_key, PIPELINE.dimension)
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


dwcp_raw_gx_expectations = gx_partition_check(
    asset=dwcp_raw, name="gx_expectations", partitions_def=PIPELINE.partitions, load=_raw_partition,
    expectations=_raw_expectations,
    description="GX: documented categories, throughput >= 0, packet_loss in [0, 1], one row per link and minute.",
)


@dg.asset_check(asset=dwcp_windows, name="splits_filled_and_finite", blocking=True,
                description="Every split holds windows; no NaN or infinity.")
def dwcp_windows_splits_filled_and_finite() -> dg.AssetCheckResult:
    passed, metadata = runs.windows_usable()
    return dg.AssetCheckResult(passed=passed, metadata=metadata)


def _gate_check(name: str) -> dg.AssetChecksDefinition:
    _, description = GATES[name]

    @dg.asset_check(asset=dwcp_onnx, name=name, blocking=True, description=description)
    def _check() -> dg.AssetCheckResult:
        from netassets.dwcp.gates import run_gate

        candidate = runs.model_store().candidate()
        problems, metadata = run_gate(name, candidate)
        return dg.AssetCheckResult(passed=not problems, metadata=shown({
            **metadata, "onnx": str(candidate.path("onnx")), "problems": "\n".join(problems) or "none"}))

    return _check


dwcp_onnx_onnx_checker, dwcp_onnx_onnx_parity, dwcp_onnx_onnx_io_contract = (_gate_check(name) for name in GATES)


@dg.asset_check(asset=dwcp_onnx, name=VERDICT_CHECK, blocking=True,
                description="Promotion gate: the candidate's training run beats its strongest baseline (persistence, "
                            "mean and harmonic mean of the last 5, ridge AR(20)) on the test split; fails (ERROR, "
                            "blocking dwcp_onnx_production) when it does not.")
def dwcp_onnx_beats_strongest_baseline() -> dg.AssetCheckResult:
    candidate = runs.model_store().candidate()
    refusal = candidate.refusal
    evaluation = candidate.evaluations[0] if candidate.evaluations else None
    return dg.AssetCheckResult(passed=refusal is None, description=refusal or evaluation.verdict,
                               metadata=evaluation.metadata() if evaluation else {"verdict": refusal})


@dg.asset_check(asset=dwcp_onnx_production, name="onnx_io_contract",
                description="The live ONNX file passes onnx.checker and has the I/O contract of the checkpoint it "
                            "was exported from (input 'input' [batch, window, features], output 'output' "
                            "[batch, targets], float32, dynamic batch).")
def dwcp_onnx_production_onnx_io_contract() -> dg.AssetCheckResult:
    from netassets.dwcp.gates import live_problems

    live = runs.model_store().production()
    if live is None:
        return dg.AssetCheckResult(passed=False, description="no model has been promoted yet",
                                   metadata={"problems": "no production.json"})
    problems, metadata = live_problems(live)
    return dg.AssetCheckResult(passed=not problems, metadata=shown({
        **metadata, "onnx": str(live.path("onnx")), "problems": "\n".join(problems) or "none"}))
