"""The gates an exported ONNX candidate must pass before it replaces the production copy.

Each gate returns (problems, metadata); no problems means it passed. The blocking asset checks
and the promotion asset both run them, so there is one definition of "passes".
"""

from __future__ import annotations

from netassets.core.evaluation import promotion_refusal
from netassets.dwcp import artifacts, onnx_export


def _checker(c: artifacts.Candidate) -> tuple[list[str], dict]:
    return onnx_export.checker_problems(c.onnx), {}


def _parity(c: artifacts.Candidate) -> tuple[list[str], dict]:
    worst = onnx_export.parity(c.onnx, onnx_export.load_model(c.checkpoint), c.held_out)
    problems = [] if worst < onnx_export.PARITY_TOLERANCE else [
        f"max |onnxruntime - torch| = {worst:.3g} >= {onnx_export.PARITY_TOLERANCE} on held-out windows"]
    return problems, {"max_abs_difference": worst, "held_out_windows": len(c.held_out)}


def _contract(c: artifacts.Candidate) -> tuple[list[str], dict]:
    ck = c.checkpoint
    return onnx_export.contract_problems(c.onnx, ck["window"], len(ck["features"]), len(ck["targets"])), {}


def _beats_baselines(c: artifacts.Candidate) -> tuple[list[str], dict]:
    """core.evaluation's one promotion rule, on the verdict the training run recorded."""
    evaluation = artifacts.load_evaluation(c.run_dir)
    refusal = promotion_refusal(evaluation)
    return ([refusal] if refusal else []), {"verdict": evaluation.verdict if evaluation else refusal}


GATES = {
    "dwcp_onnx_checker": (_checker, "onnx.checker (full check) accepts the exported file."),
    "dwcp_onnx_parity": (_parity, f"onnxruntime matches torch within {onnx_export.PARITY_TOLERANCE} on held-out windows."),
    "dwcp_onnx_contract": (_contract, "Input 'input' [batch, window, features], output 'output' [batch, targets], "
                                      "float32, dynamic batch."),
    "dwcp_onnx_beats_baselines": (_beats_baselines, "The model beats its strongest baseline (persistence, mean and "
                                                    "harmonic mean of the last 5, ridge AR(20)) on the test split."),
}


def candidate_problems() -> list[str]:
    """Every gate's problems for the current candidate (empty: it may go to production)."""
    candidate = artifacts.load_candidate()
    return [f"{name}: {p}" for name, (gate, _) in GATES.items() for p in gate(candidate)[0]]


