"""The gates an exported ONNX candidate must pass before it replaces the production copy.

Each gate reads a ``core.model_store.ModelVersion`` (the candidate, in its run folder) and returns
(problems, metadata); no problems means it passed. The blocking asset checks on ``dwcp_onnx``
show each one; ``store_gates()`` hands the same functions to ``ModelStore.promote``, beside the
store's one rule (beat the strongest baseline on test), so there is one definition of "passes".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from netassets.core.model_store import ModelVersion
from netassets.dwcp import onnx_export
from netassets.dwcp.runs import RUN_WINDOWS
from netassets.dwcp.windows import Windows


@dataclass
class Candidate:
    version: ModelVersion
    checkpoint: dict
    held_out: np.ndarray  # standardised test windows, (n, window, features) float32

    @property
    def onnx(self):
        return self.version.path("onnx")


def load_candidate(version: ModelVersion) -> Candidate:
    from netassets.core.training import load_checkpoint

    checkpoint = load_checkpoint(version.path("checkpoint"))
    windows = Windows.load(version.folder / RUN_WINDOWS)
    scaler = checkpoint["scaler"]
    test = windows.x[windows.part("test")]
    held_out = ((test - np.array(scaler["x_mean"])) / np.array(scaler["x_scale"])).astype(np.float32)
    return Candidate(version, checkpoint, held_out)


def _checker(c: Candidate) -> tuple[list[str], dict]:
    return onnx_export.checker_problems(c.onnx), {}


def _parity(c: Candidate) -> tuple[list[str], dict]:
    worst = onnx_export.parity(c.onnx, onnx_export.load_model(c.checkpoint), c.held_out)
    problems = [] if worst < onnx_export.PARITY_TOLERANCE else [
        f"max |onnxruntime - torch| = {worst:.3g} >= {onnx_export.PARITY_TOLERANCE} on held-out windows"]
    return problems, {"max_abs_difference": worst, "held_out_windows": len(c.held_out)}


def _contract(c: Candidate) -> tuple[list[str], dict]:
    ck = c.checkpoint
    return onnx_export.contract_problems(c.onnx, ck["window"], len(ck["features"]), len(ck["targets"])), {}


# check name -> (gate, description)
GATES: dict[str, tuple[Callable[[Candidate], tuple[list[str], dict]], str]] = {
    "onnx_checker": (_checker, "onnx.checker (full check) accepts the exported file."),
    "onnx_parity": (_parity, f"onnxruntime matches torch within {onnx_export.PARITY_TOLERANCE} on held-out windows."),
    "onnx_io_contract": (_contract, "Input 'input' [batch, window, features], output 'output' [batch, targets], "
                                    "float32, dynamic batch."),
}


def run_gate(name: str, version: ModelVersion) -> tuple[list[str], dict]:
    return GATES[name][0](load_candidate(version))


def store_gates() -> list[Callable[[ModelVersion], Iterable[str]]]:
    """The gates as ``ModelStore.promote`` takes them; each problem is prefixed by its gate's name."""
    def gate(name: str):
        return lambda version: [f"{name}: {p}" for p in run_gate(name, version)[0]]

    return [gate(name) for name in GATES]


def live_problems(version: ModelVersion) -> tuple[list[str], dict]:
    """What the Go side relies on, for the production copy itself: onnx.checker accepts it and its
    inputs and outputs are the contract of the checkpoint it was exported from."""
    from netassets.core.training import load_checkpoint

    ck = load_checkpoint(version.path("checkpoint"))
    problems = [*onnx_export.checker_problems(version.path("onnx")),
                *onnx_export.contract_problems(version.path("onnx"), ck["window"], len(ck["features"]), len(ck["targets"]))]
    return problems, {"run": version.run_id, "version": str(version.info.get("version", version.run_id))}
