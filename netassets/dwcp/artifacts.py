"""Where the DWCP model's files live under ``artifacts_dir("dwcp")``, and the pointers between them.

    windows.npz                         dwcp_windows
    runs/<run_id>/                      one training run: windows.npz (the copy it trained on),
                                        best_model.pt, history.json, predictions.npz, evaluation.json,
                                        bandwidth_predictor_report.json, plots, bandwidth_lstm_<v>.onnx,
                                        model_metadata_<v>.json
    latest_run.json                     the last training run that finished (written after success)
    candidate.json                      the last exported ONNX file and its metadata
    production/bandwidth_lstm_production.onnx (+ model_metadata.json)   replaced only after every check passes

A failed retrain writes only into its own run folder, so it never damages the files that
downstream assets or the production copy point at.

No torch here: the asset and check modules that the code location loads import this one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netassets.core.evaluation import Evaluation
from netassets.core.files import write_json
from netassets.core.settings import artifacts_dir, safe_name
from netassets.dwcp.schema import PIPELINE
from netassets.dwcp.windows import Windows

# Written by netassets.dwcp.train into the run folder.
CHECKPOINT = "best_model.pt"
HISTORY = "history.json"
PREDICTIONS = "predictions.npz"
REPORT = "bandwidth_predictor_report.json"
EVALUATION = "evaluation.json"  # core.evaluation's verdict on test, written by dwcp_bandwidth_lstm
RUN_WINDOWS = "windows.npz"
PRODUCTION_ONNX = "bandwidth_lstm_production.onnx"
PRODUCTION_METADATA = "model_metadata.json"


def root() -> Path:
    return artifacts_dir(PIPELINE)


def windows_path() -> Path:
    return root() / "windows.npz"


def run_dir(run_id: str) -> Path:
    return root() / "runs" / safe_name(run_id, "run id")


def load_evaluation(run: Path) -> Evaluation | None:
    """The verdict dwcp_bandwidth_lstm recorded for a training run (None when it recorded none)."""
    path = run / EVALUATION
    return Evaluation.from_dict(json.loads(path.read_text())) if path.is_file() else None


def production_dir() -> Path:
    return root() / "production"


def read_pointer(name: str, produced_by: str) -> dict:
    path = root() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: materialise {produced_by} first")
    return json.loads(path.read_text())


def latest_run() -> Path:
    return Path(read_pointer("latest_run.json", "dwcp_bandwidth_lstm")["run_dir"])


def set_latest_run(path: Path) -> None:
    write_json(root() / "latest_run.json", {"run_dir": str(path)})


def candidate() -> dict:
    return read_pointer("candidate.json", "dwcp_onnx")


def set_candidate(onnx_path: Path, metadata_path: Path, version: str, run: Path) -> None:
    write_json(root() / "candidate.json",
               {"onnx": str(onnx_path), "metadata": str(metadata_path), "version": version, "run_dir": str(run)})


@dataclass
class Candidate:
    onnx: Path
    metadata: Path
    checkpoint: dict
    held_out: np.ndarray  # standardised test windows, (n, window, features) float32
    run_dir: Path         # the training run it was exported from (its evaluation.json judges it)


def load_candidate() -> Candidate:
    from netassets.core.training import load_checkpoint

    pointer = candidate()
    checkpoint = load_checkpoint(Path(pointer["run_dir"]) / CHECKPOINT)
    windows = Windows.load(Path(pointer["run_dir"]) / RUN_WINDOWS)
    scaler = checkpoint["scaler"]
    test = windows.x[windows.part("test")]
    held_out = ((test - np.array(scaler["x_mean"])) / np.array(scaler["x_scale"])).astype(np.float32)
    return Candidate(Path(pointer["onnx"]), Path(pointer["metadata"]), checkpoint, held_out, Path(pointer["run_dir"]))
