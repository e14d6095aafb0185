"""Promotion of a trained candidate to the live model: only when it beats its strongest baseline on test."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from netassets.core.evaluation import Evaluation
from netassets.device_load.assets import promote
from netassets.device_load.features import Windows
from netassets.device_load.train import main as train_main


def _evaluation(model_mse: float, persistence_mse: float, window_mean_mse: float = 9.0) -> Evaluation:
    scores = {"embed_lstm": {"mse": model_mse}, "persistence": {"mse": persistence_mse}, "window_mean": {"mse": window_mean_mse}}
    return Evaluation(model="embed_lstm", metric="mse", higher_is_better=False, scores=scores, rows=40, split_rule="last 10 %")


def _files(tmp_path):
    candidate, live = tmp_path / "runs" / "r1" / "model.pt", tmp_path / "model.pt"
    candidate.parent.mkdir(parents=True)
    candidate.write_bytes(b"candidate")
    live.write_bytes(b"live")
    return candidate, live


@pytest.mark.parametrize("model_mse, reason", [(0.5, "loses to persistence 0.4"), (0.4, "ties persistence 0.4"),
                                               (float("nan"), "has no finite mse")])
def test_promotion_is_refused_when_a_baseline_wins_and_the_live_model_stays(tmp_path, model_mse, reason):
    candidate, live = _files(tmp_path)
    with pytest.raises(dg.Failure, match="not promoted") as refused:
        promote(candidate, _evaluation(model_mse, 0.4), live)
    assert reason in refused.value.description and "40 test rows" in refused.value.description
    assert live.read_bytes() == b"live" and candidate.read_bytes() == b"candidate"


def test_a_winning_candidate_replaces_the_live_model(tmp_path):
    candidate, live = _files(tmp_path)
    assert promote(candidate, _evaluation(0.3, 0.4), live) == live
    assert live.read_bytes() == b"candidate"


def test_non_finite_validation_loss_stops_training_with_the_file_named(tmp_path):
    n, window = 40, 3
    rng = np.random.default_rng(0)
    windows = Windows(rng.normal(size=(n, window, 8)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32),
                      rng.normal(size=(n, 2)).astype(np.float32), np.zeros(n, dtype=np.int64),
                      np.arange(n).astype("datetime64[h]").astype("datetime64[us]"), np.arange(n))
    windows.x[30:] = np.nan  # every validation window
    split = np.repeat(np.array([0, 1, 2], dtype=np.int8), [30, 5, 5])
    windows.save(tmp_path / "windows.npz", split)
    (tmp_path / "scalers.json").write_text('{"routers": ["a"]}')
    with pytest.raises(SystemExit, match="windows.npz: validation error was never finite"):
        train_main([f"--windows={tmp_path / 'windows.npz'}", f"--scalers={tmp_path / 'scalers.json'}",
                    f"--out={tmp_path / 'model.pt'}", f"--evaluation={tmp_path / 'e.json'}", "--epochs=1"])
    assert not (tmp_path / "model.pt").exists()


def test_evaluation_names_a_router_without_test_rows_and_keeps_the_split_in_each_metric():
    import torch

    from netassets.device_load.model import EmbedLSTM, ModelConfig
    from netassets.device_load.train import evaluate

    rng = np.random.default_rng(1)

    def windows(n, router):
        return Windows(rng.normal(size=(n, 3, 8)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32),
                       rng.normal(size=(n, 2)).astype(np.float32), np.full(n, router, dtype=np.int64),
                       np.zeros(n, dtype="datetime64[us]"), np.arange(n))

    torch.manual_seed(0)
    evaluation = evaluate(EmbedLSTM(ModelConfig(n_routers=2)), windows(6, 0), windows(5, 0), ["a", "b"], "rule")
    assert evaluation.split == "test" and evaluation.rows == 5 and set(evaluation.baselines) == {"persistence", "window_mean"}
    assert evaluation.notes == ("routers with no test windows (not in the verdict): b",)
    # An untrained residual model is persistence exactly: a tie, which loses.
    assert evaluation.value("embed_lstm") == evaluation.value("persistence") and not evaluation.beats_strongest_baseline
    assert all(set(s) == {"mse", "val_mse"} for s in evaluation.scores.values())
