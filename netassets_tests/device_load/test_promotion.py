"""Promotion of a trained candidate to production: only when it beats its strongest baseline on test."""

from __future__ import annotations

import types
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

import netassets.defs.device_load.assets as device_load_assets
from netassets.core.evaluation import Evaluation
from netassets.core.files import write_json
from netassets.defs.device_load.assets import device_load_model
from netassets.device_load.config import TrainConfig
from netassets.device_load.features import Windows
from netassets.device_load.store import EVALUATION, WEIGHTS, live_weights, model_store, propose
from netassets.device_load.train import main as train_main


def _evaluation(model_mse: float, persistence_mse: float, window_mean_mse: float = 9.0) -> Evaluation:
    scores = {"embed_lstm": {"mse": model_mse}, "persistence": {"mse": persistence_mse}, "window_mean": {"mse": window_mean_mse}}
    return Evaluation(model="embed_lstm", metric="mse", higher_is_better=False, scores=scores, rows=40, split_rule="last 10 %")


def _run(store, run_id: str, weights: bytes, evaluation: Evaluation):
    folder = store.run_dir(run_id)
    (folder / WEIGHTS).write_bytes(weights)
    write_json(folder / EVALUATION, evaluation.to_dict())
    return propose(store, run_id, evaluation)


def _live_model(store):
    _run(store, "r0", b"live", _evaluation(0.1, 0.4))
    return store.promote()


@pytest.mark.parametrize("model_mse, reason", [(0.5, "loses to persistence 0.4"), (0.4, "ties persistence 0.4"),
                                               (float("nan"), "has no finite mse")])
def test_promotion_is_refused_when_a_baseline_wins_and_production_stays(netassets_home, model_mse, reason):
    store = model_store()
    _live_model(store)
    candidate = _run(store, "r1", b"candidate", _evaluation(model_mse, 0.4))
    with pytest.raises(dg.Failure, match="not promoted") as refused:
        store.promote()
    assert reason in refused.value.description and "40 test rows" in refused.value.description
    assert store.production().run_id == "r0" and live_weights().read_bytes() == b"live"
    assert candidate.path("weights").read_bytes() == b"candidate"


def test_a_winning_candidate_becomes_production(netassets_home):
    store = model_store()
    _live_model(store)
    _run(store, "r1", b"candidate", _evaluation(0.3, 0.4))
    live = store.promote()
    assert live.run_id == "r1" and store.production().run_id == "r1"
    assert live_weights() == live.path("weights") and live_weights().read_bytes() == b"candidate"
    assert (store.run_dir("r1") / WEIGHTS).read_bytes() == b"candidate"  # the run folder keeps its own copy


def test_no_production_model_names_the_asset_to_materialise(netassets_home):
    with pytest.raises(FileNotFoundError, match="materialise device_load_model first"):
        live_weights()


def _fake_training(model_mse: float):
    """Stands in for torchrun: writes what the worker writes into the run folder (``--out``)."""
    def launch(context, module, args, nproc=None):
        values = dict(arg.removeprefix("--").split("=", 1) for arg in args)
        config = TrainConfig.read(values["config"])  # the asset's config reached the worker as one file
        assert module == "netassets.device_load.train" and config.epochs == 2 and nproc == 1
        out = Path(values["out"])
        (out / WEIGHTS).write_bytes(f"weights {model_mse}".encode())
        write_json(out / EVALUATION, _evaluation(model_mse, 0.4).to_dict())
        return types.SimpleNamespace(get_materialize_result=lambda: dg.MaterializeResult(metadata={"val_mse": 0.2}))
    return launch


def test_the_model_asset_reports_its_verdict_and_keeps_production_when_it_loses(netassets_home, instance, monkeypatch):
    run_config = {"ops": {"device_load_model": {"config": {"epochs": 2}}}}
    monkeypatch.setattr(device_load_assets, "launch_torchrun", _fake_training(0.3))
    won = dg.materialize([device_load_model], instance=instance, run_config=run_config)
    (verdict,) = won.get_asset_check_evaluations()
    assert verdict.check_name == "beats_strongest_baseline" and verdict.passed
    assert model_store().production().run_id == won.run_id and live_weights().read_bytes() == b"weights 0.3"
    assert (model_store().run_dir(won.run_id) / "config.json").is_file()

    monkeypatch.setattr(device_load_assets, "launch_torchrun", _fake_training(0.5))
    lost = dg.materialize([device_load_model], instance=instance, run_config=run_config, raise_on_error=False)
    assert not lost.success
    (verdict,) = lost.get_asset_check_evaluations()
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.WARN
    assert "loses to persistence 0.4" in verdict.description
    failure = next(e for e in lost.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "not promoted" in str(failure.step_failure_data.user_failure_data.description)
    assert model_store().production().run_id == won.run_id and live_weights().read_bytes() == b"weights 0.3"


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
    TrainConfig(epochs=1).write(tmp_path / "config.json")
    with pytest.raises(SystemExit, match="windows.npz: validation error was never finite"):
        train_main([f"--config={tmp_path / 'config.json'}", f"--windows={tmp_path / 'windows.npz'}",
                    f"--scalers={tmp_path / 'scalers.json'}", f"--out={tmp_path / 'run'}"])
    assert not (tmp_path / "run" / WEIGHTS).exists() and not (tmp_path / "run" / EVALUATION).exists()


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
