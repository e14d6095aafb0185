"""The Embed-LSTM's files through ``core.model_store`` (no torch: the Dagster modules import this).

``device_load_model`` trains into ``runs/<run id>/`` (``config.json``, ``model.safetensors``,
``evaluation.json``), proposes the run's weights as the candidate and promotes them through
the one rule (beat the strongest baseline on test); ``device_load_anomalies`` loads
``store.production()``. Windows and scalers stay beside the store, in the pipeline's models
folder: they are the data the runs train on, not a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from netassets.core.evaluation import Evaluation
from netassets.core.model_store import ModelStore, ModelVersion
from netassets.core.settings import artifacts_dir
from netassets.device_load.config import TrainConfig
from netassets.device_load.landing import PIPELINE

MODEL_NAME = "embed_lstm"
PRODUCED_BY = "device_load_model"
WEIGHTS = "model.safetensors"  # written by netassets.device_load.train in the run folder
EVALUATION = "evaluation.json"
CONFIG = "config.json"
WORKER = "netassets.device_load.train"


def model_store() -> ModelStore:
    return ModelStore(PIPELINE, MODEL_NAME, produced_by=PRODUCED_BY)


def windows_path() -> Path:
    return artifacts_dir(PIPELINE) / "windows.npz"


def scalers_path() -> Path:
    return artifacts_dir(PIPELINE) / "scalers.json"


def worker_args(config: TrainConfig, run_dir: Path, split_rule: str,
                windows: Path | None = None, scalers: Path | None = None) -> list[str]:
    """Write the training config into the run folder; the worker's arguments: that file, data and output paths."""
    config.write(run_dir / CONFIG)
    return [f"--config={run_dir / CONFIG}", f"--windows={windows or windows_path()}",
            f"--scalers={scalers or scalers_path()}", f"--out={run_dir}", f"--split_rule={split_rule}"]


def read_evaluation(run_dir: Path) -> Evaluation:
    return Evaluation.from_dict(json.loads((run_dir / EVALUATION).read_text()))


def propose(store: ModelStore, run_id: str, evaluation: Evaluation) -> ModelVersion:
    """The run's weights become the candidate, with the verdict they earned on test."""
    store.finish_run(run_id)
    return store.propose(run_id, {"weights": WEIGHTS, "evaluation": EVALUATION}, [evaluation])


def live_weights(store: ModelStore | None = None) -> Path:
    """The production weights' path; FileNotFoundError naming the asset to materialise when none is live."""
    store = store or model_store()
    version = store.production()
    if version is None:
        raise FileNotFoundError(f"no production model in {store.root}: materialise {store.produced_by} first "
                                "(a candidate goes live only when it beats its strongest baseline on test)")
    return version.path("weights")
