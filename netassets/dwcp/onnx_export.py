"""ONNX export of a BandwidthLSTM checkpoint and the checks a candidate must pass.

Contract (what the Go side reads): input ``input`` float32 [batch, window, features], output
``output`` float32 [batch, targets], batch dimension dynamic. Both are in standardised units:
the scaler parameters travel in model_metadata.json, as in the seed. The output is a level, not
a change: the DeltaForecaster adds the last observed value inside the graph.

torch, onnx and onnxruntime are imported by the functions that use them: the code location
imports this module (through the gates and assets) for its names and constants.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from netassets.dwcp.model import DeltaForecaster

INPUT, OUTPUT = "input", "output"
OPSET = 17
PARITY_TOLERANCE = 1e-4


def load_model(checkpoint: dict) -> DeltaForecaster:
    from netassets.dwcp.model import build_model

    model = build_model(checkpoint["arch"], checkpoint["scaler"])
    state = checkpoint["model"]
    if "members" not in checkpoint["arch"]:  # written before the ensemble: its one network is member 0
        state = {("net.members.0." + key[len("net."):] if key.startswith("net.") else key): value
                 for key, value in state.items()}
    model.load_state_dict(state)
    return model.eval()


def export(model: DeltaForecaster, window: int, n_features: int, path: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    # Traced at batch 1 (PyTorch's advice for LSTMs); the batch axis is then declared dynamic.
    example = torch.zeros(1, window, n_features)
    # dynamo=False: the TorchScript exporter handles nn.LSTM without the onnxscript package.
    torch.onnx.export(
        model, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT], opset_version=OPSET,
        dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False,
    )
    return path


def model_metadata(checkpoint: dict, report: dict, *, version: str, onnx_path: Path, training_run: str) -> dict:
    """model_metadata_<version>.json: the seed's keys plus the I/O contract and the training partitions."""
    window, features, targets = checkpoint["window"], checkpoint["features"], checkpoint["targets"]
    return {
        "version": version, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "model_size_mb": onnx_path.stat().st_size / 2**20, "target_achieved": report["success"],
        "performance_metrics": report["performance_metrics"], "baselines": report["baselines"],
        "model_architecture": checkpoint["arch"], "features": features, "targets": targets, "window": window,
        "horizon_steps": checkpoint["horizon"], "scaler_params": checkpoint["scaler"],
        "io": {INPUT: {"shape": ["batch", window, len(features)], "units": "standardised: (x - x_mean) / x_scale"},
               OUTPUT: {"shape": ["batch", len(targets)], "units": "standardised level (the last value is added in the graph): "
                                                                  "y = output * y_scale + y_mean"}},
        "opset": OPSET, "training_partitions": report["training_partitions"], "training_run": training_run,
    }


def checker_problems(path: Path) -> list[str]:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx raises ValidationError, InferenceError or DecodeError
        return [f"onnx.checker: {exc}"]
    return []


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def contract_problems(path: Path, window: int, n_features: int, n_targets: int) -> list[str]:
    import onnx

    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:
        return [f"cannot load {path}: {exc}"]
    problems = []
    inputs, outputs = list(graph.input), list(graph.output)
    if [i.name for i in inputs] != [INPUT] or [o.name for o in outputs] != [OUTPUT]:
        return [f"inputs {[i.name for i in inputs]} / outputs {[o.name for o in outputs]}, expected [{INPUT!r}] / [{OUTPUT!r}]"]
    in_dims, out_dims = _dims(inputs[0]), _dims(outputs[0])
    if len(in_dims) != 3 or not isinstance(in_dims[0], str) or in_dims[1:] != [window, n_features]:
        problems.append(f"input shape {in_dims}, expected [batch, {window}, {n_features}] with a dynamic batch")
    if len(out_dims) != 2 or not isinstance(out_dims[0], str) or out_dims[1:] != [n_targets]:
        problems.append(f"output shape {out_dims}, expected [batch, {n_targets}] with a dynamic batch")
    for io in (*inputs, *outputs):
        if io.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"{io.name} is not float32")
    return problems


def session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a shared box, and what a per-request Go call would get
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(path: Path, model: DeltaForecaster, x: np.ndarray, batch_size: int = 256) -> float:
    """Max |onnxruntime - torch| over the given (standardised) windows; infinite where either
    gives a non-finite output or another shape (``max(worst, nan)`` kept ``worst``: a model whose
    every output was NaN passed with 0.0)."""
    import torch

    ort_session = session(path)
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            chunk = np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32)
            ours = ort_session.run([OUTPUT], {INPUT: chunk})[0]
            reference = model(torch.from_numpy(chunk)).numpy()
            if ours.shape != reference.shape or not (np.isfinite(ours).all() and np.isfinite(reference).all()):
                return math.inf
            worst = max(worst, float(np.abs(ours - reference).max()))
    return worst


