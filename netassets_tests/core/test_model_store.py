"""The one model lifecycle: runs apart, a candidate with its verdicts, promotion through gates."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import dagster as dg
import pytest

from netassets.core.evaluation import Evaluation
from netassets.core.model_store import KEEP_PRODUCTION_VERSIONS, ModelStore


def _evaluation(model_rmse: float, baseline_rmse: float, split: str = "test") -> Evaluation:
    return Evaluation(model="lstm", metric="rmse", higher_is_better=False, rows=10, split_rule="last day",
                      split=split, scores={"lstm": {"rmse": model_rmse}, "persistence": {"rmse": baseline_rmse}})


def _trained(store: ModelStore, run_id: str, weights: bytes = b"w") -> Path:
    folder = store.run_dir(run_id)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "config.json").write_text("{}")
    return folder


def test_winning_candidate_is_promoted_and_pointer_names_its_copy(netassets_home):
    store = ModelStore("dwcp", "bandwidth_lstm", produced_by="dwcp_bandwidth_lstm")
    _trained(store, "run1", b"v1")
    store.propose("run1", {"weights": "model.safetensors", "config": "config.json"}, [_evaluation(0.9, 1.0)])
    live = store.promote()
    assert live.path("weights").read_bytes() == b"v1"
    assert live.folder.parent == store.root / "production" and live.folder.name.startswith("run1.")
    assert store.production() == live
    assert json.loads((store.root / "production.json").read_text())["run_id"] == "run1"


def test_losing_candidate_is_refused_with_the_verdict_and_production_kept(netassets_home):
    store = ModelStore("dwcp", "bandwidth_lstm", produced_by="dwcp_bandwidth_lstm")
    _trained(store, "good", b"good")
    store.propose("good", {"weights": "model.safetensors"}, [_evaluation(0.9, 1.0)])
    store.promote()
    _trained(store, "bad", b"bad")
    store.propose("bad", {"weights": "model.safetensors"}, [_evaluation(1.1, 1.0)])
    with pytest.raises(dg.Failure) as refused:
        store.promote()
    assert "loses" in refused.value.description and "production kept" in refused.value.description
    assert refused.value.metadata["candidate_run"].value == "bad"
    assert store.production().path("weights").read_bytes() == b"good"


def test_every_verdict_must_win_and_verdicts_must_come_from_test(netassets_home):
    store = ModelStore("lens", "patchtst", produced_by="lens_patchtst")
    _trained(store, "r")
    store.propose("r", {"weights": "model.safetensors"}, [_evaluation(0.9, 1.0), _evaluation(0.5, 1.0, split="val")])
    with pytest.raises(dg.Failure, match="test split"):
        store.promote()
    store.propose("r", {"weights": "model.safetensors"}, [])
    with pytest.raises(dg.Failure, match="no evaluation"):
        store.promote()


def test_gate_problems_refuse_promotion(netassets_home):
    store = ModelStore("dwcp", "onnx", produced_by="dwcp_onnx")
    _trained(store, "r")
    store.propose("r", {"weights": "model.safetensors"}, [_evaluation(0.9, 1.0)])
    with pytest.raises(dg.Failure, match="parity 0.3 > 1e-4"):
        store.promote(gates=[lambda version: ["parity 0.3 > 1e-4"]])
    assert store.production() is None
    assert store.promote(gates=[lambda version: []]).run_id == "r"


def test_candidate_needs_its_files_and_reader_names_the_producer(netassets_home):
    store = ModelStore("traffic", "lstm", produced_by="traffic_lstm")
    with pytest.raises(FileNotFoundError, match="materialise traffic_lstm first"):
        store.candidate()
    store.run_dir("r")
    with pytest.raises(FileNotFoundError, match="missing"):
        store.propose("r", {"weights": "model.safetensors"})
    with pytest.raises(ValueError, match="invalid run id"):
        store.run_dir("../escape")


def test_old_production_copies_are_pruned(netassets_home):
    store = ModelStore("device_load", "embed_lstm", produced_by="device_load_model")
    for i in range(KEEP_PRODUCTION_VERSIONS + 2):
        _trained(store, f"r{i}")
        store.propose(f"r{i}", {"weights": "model.safetensors"}, [_evaluation(0.9, 1.0)])
        store.promote()
    kept = sorted(p.name.split(".")[0] for p in (store.root / "production").iterdir())
    newest = [f"r{i}" for i in range(2, KEEP_PRODUCTION_VERSIONS + 2)]
    assert kept == newest and store.production().run_id == newest[-1]


def _promote_in_child(home: str, run_id: str) -> None:
    import os

    os.environ["NETASSETS_HOME"] = home
    store = ModelStore("dwcp", "race", produced_by="x")
    for _ in range(20):
        store.promote()


@pytest.mark.fault("two processes promoting one model at once")
def test_concurrent_promotions_leave_one_complete_version(netassets_home):
    store = ModelStore("dwcp", "race", produced_by="x")
    _trained(store, "r", b"x" * 100_000)
    store.propose("r", {"weights": "model.safetensors"}, [_evaluation(0.9, 1.0)])
    workers = [multiprocessing.get_context("fork").Process(target=_promote_in_child, args=(str(netassets_home), "r"))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert store.production().path("weights").read_bytes() == b"x" * 100_000


def test_a_run_promoted_again_goes_to_a_fresh_folder_and_a_failed_copy_leaves_the_live_one_whole(netassets_home,
                                                                                                 monkeypatch):
    """A run id promoted again (a step retried, a run continued with more epochs) was copied over
    the live files one by one: a reader or a kill in between met new weights beside the old config.
    The copy that fails here is injected (a crash mid-copy cannot be timed otherwise)."""
    from netassets.core import model_store

    store = ModelStore("dwcp", "bandwidth_lstm", produced_by="dwcp_bandwidth_lstm")
    files = {"weights": "model.safetensors", "config": "config.json"}
    folder = _trained(store, "run1", b"w1")
    store.propose("run1", files, [_evaluation(0.9, 1.0)])
    first = store.promote()
    (folder / "model.safetensors").write_bytes(b"w2")
    (folder / "config.json").write_text('{"epochs": 2}')
    store.propose("run1", files, [_evaluation(0.8, 1.0)])
    real_copy, copied = model_store.copy_file, []

    def copy_then_crash(source, target):
        if copied:
            raise OSError("disk full")
        copied.append(target)
        real_copy(source, target)

    monkeypatch.setattr(model_store, "copy_file", copy_then_crash)
    with pytest.raises(OSError, match="disk full"):
        store.promote()
    assert store.production() == first
    assert first.path("weights").read_bytes() == b"w1" and first.path("config").read_text() == "{}"
    assert sorted(p.name for p in (store.root / "production").iterdir()) == [first.folder.name]  # nothing half-made
    monkeypatch.setattr(model_store, "copy_file", real_copy)
    second = store.promote()
    assert second.folder != first.folder and second.run_id == "run1"
    assert second.path("weights").read_bytes() == b"w2" and second.path("config").read_text() == '{"epochs": 2}'
    assert first.path("weights").read_bytes() == b"w1"  # the version before, kept whole for a roll back


def test_a_run_promotes_the_version_it_proposed_whatever_candidate_json_says_now(netassets_home):
    store = ModelStore("traffic", "race", produced_by="x")
    files = {"weights": "model.safetensors"}
    _trained(store, "winner", b"mine")
    mine = store.propose("winner", files, [_evaluation(0.9, 1.0)])
    _trained(store, "loser", b"theirs")
    store.propose("loser", files, [_evaluation(1.1, 1.0)])  # a concurrent run's candidate, proposed since
    live = store.promote(version=mine)
    assert live.run_id == "winner" and live.path("weights").read_bytes() == b"mine"
