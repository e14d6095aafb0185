import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch

from netassets.core.training import load_checkpoint, load_weights
from netassets.defs.lens.checks import lens_patchtst_beats_strongest_baseline, lens_patchtst_production_weights_load
from netassets.defs.lens.model_assets import LensPatchTSTConfig, lens_patchtst, lens_patchtst_production
from netassets.lens.config import TrainConfig
from netassets.lens.models import held_out_evaluations, patchtst_store, refusal_of
from netassets.lens.patchtst import channel_columns, check_clusters_trainable, class_weights

TINY = dict(patch_length=10, d_model=16, num_attention_heads=2, num_hidden_layers=1, ffn_dim=32)
# A tiny model with the default recipe's schedule, long enough to beat logistic regression on the
# fixture's held-out day (a test of the promotion path, not of the recipe: bench/lens_train does that).
WINNING = dict(epochs=20, batch_size=16, lr=0.01, monitor_metric="val_macro_f1", **TINY)


def test_asset_trains_under_torchrun_with_two_processes_and_promotes_the_checkpoint(lens_home):
    config = dict(nproc=2, channels="both", **WINNING)
    result = dg.materialize(
        [lens_patchtst, lens_patchtst_beats_strongest_baseline, lens_patchtst_production],
        resources={"warehouse": lens_home.warehouse}, instance=lens_home.instance,
        run_config={"ops": {"lens_patchtst": {"config": config}}},
    )
    meta = result.asset_materializations_for_node("lens_patchtst")[0].metadata
    assert meta["world_size"].value == 2  # two DDP ranks over gloo ...
    assert meta["device"].text == "cpu"
    # ... and one materialisation: only rank 0 opened dagster-pipes.
    assert len(result.asset_materializations_for_node("lens_patchtst")) == 1
    assert meta["split_days"].data == {"train": ["2023-11-01"], "val": ["2023-11-02"], "test": ["2023-11-03"]}
    # Model and both baselines scored on the same held-out groups, each row naming its split.
    assert meta["evaluation_split"].text == "test: whole held-out days 2023-11-03, every region"
    assert meta["evaluation_rows"].value == meta["groups_per_split"].data["test"]
    table = meta["evaluation"].md_str
    for scorer in ("patchtst", "majority_class", "logistic_regression"):
        assert f"| {scorer} | " in table
    assert table.count("| test |") == 3
    assert meta["beats_strongest_baseline"].value is True
    assert meta["verdict"].text.startswith("wins: patchtst macro_f1") and "wins: patchtst accuracy" in meta["verdict"].text
    assert 0 <= meta["best_val_macro_f1"].value <= 1
    assert meta["test_confusion_matrix"].md_str.startswith("![plot](data:image/png;base64,")
    # Per-epoch lines reached the Dagster log through pipes.
    logs = [e.message for e in lens_home.instance.all_logs(result.run_id) if e.message]
    assert any(f"epoch {WINNING['epochs']} lr " in line and "train_loss" in line for line in logs)

    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "beats_strongest_baseline" and check.passed
    # Promoted through the model store: the run's safetensors weights, copied into production/<run id>/.
    live = patchtst_store().production()
    assert live.run_id == meta["candidate_run"].text and live.folder.parent.name == "production"
    (promoted, info), (candidate, _) = load_weights(live.path("model")), load_weights(Path(meta["weights"].path))
    arch = json.loads(info["arch"])
    assert arch["num_input_channels"] == 2 and arch["num_targets"] == 6
    assert candidate.keys() == promoted.keys()
    for name, tensor in candidate.items():
        assert torch.equal(tensor, promoted[name])
    # ... the best epoch's weights, the ones best.pt holds, and they rebuild the classifier.
    best = load_checkpoint(live.folder.parent.parent / "runs" / live.run_id / "best.pt")
    for name, tensor in best["model"].items():
        assert torch.equal(tensor, promoted[name])
    loads = dg.materialize([lens_patchtst_production_weights_load], instance=lens_home.instance,
                           selection=dg.AssetSelection.checks(lens_patchtst_production_weights_load))
    (loaded,) = loads.get_asset_check_evaluations()
    assert loaded.check_name == "weights_load" and loaded.passed, loaded.description


def test_a_candidate_that_loses_to_logistic_regression_is_never_promoted(lens_home):
    production = patchtst_store().root / "production.json"
    before = production.read_bytes() if production.is_file() else None
    # One epoch at a learning rate too small to move the weights: near chance, far below the baselines.
    config = dict(nproc=1, channels="both", epochs=1, batch_size=64, lr=1e-7, **TINY)
    resources = {"warehouse": lens_home.warehouse}
    result = dg.materialize(
        [lens_patchtst, lens_patchtst_beats_strongest_baseline, lens_patchtst_production],
        resources=resources, instance=lens_home.instance, raise_on_error=False,
        run_config={"ops": {"lens_patchtst": {"config": config}}},
    )
    meta = result.asset_materializations_for_node("lens_patchtst")[0].metadata
    assert meta["beats_strongest_baseline"].value is False
    assert "logistic_regression" in meta["strongest_baseline"].text
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN  # yellow: the verdict, not a crash
    assert check.description.startswith("not promoted: loses: patchtst macro_f1")
    # The model store refused to promote it in this run ...
    assert not result.asset_materializations_for_node("lens_patchtst_production")
    (refused,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert refused.step_key == "lens_patchtst_production"

    # ... and production alone, in a later run, refuses the same candidate and says why.
    alone = dg.materialize([lens_patchtst_production], instance=lens_home.instance, raise_on_error=False)
    assert not alone.success
    (failure,) = [e for e in alone.all_events if e.event_type_value == "STEP_FAILURE"]
    reason = failure.step_failure_data.user_failure_data.description
    assert "production kept: not promoted: loses: patchtst macro_f1" in reason and "logistic_regression" in reason
    assert (production.read_bytes() if production.is_file() else None) == before


def test_promotion_needs_a_win_on_macro_f1_and_on_accuracy():
    scores = {"patchtst": {"macro_f1": 0.95, "accuracy": 0.90},
              "logistic_regression": {"macro_f1": 0.93, "accuracy": 0.92},
              "majority_class": {"macro_f1": 0.05, "accuracy": 0.15}}
    evaluations = held_out_evaluations(scores, rows=476, test_days=["2023-11-03"])
    assert refusal_of(evaluations) == ("not promoted: loses: patchtst accuracy 0.9 loses to logistic_regression 0.92 "
                                       "(strongest of 2 baselines, higher is better) on 476 test rows "
                                       "(whole held-out days 2023-11-03, every region)")
    scores["patchtst"]["accuracy"] = 0.93
    assert refusal_of(held_out_evaluations(scores, rows=476, test_days=["2023-11-03"])) is None


def test_classifier_inputs_keep_fractional_milliseconds_and_gaps(lens_home):
    from netassets.lens.models import current_gmm
    from netassets.lens.patchtst import load_classifier_data

    data = load_classifier_data(lens_home.warehouse, current_gmm(), "both")
    assert data.inputs.dtype == np.float32 and data.inputs.shape[1:] == (100, 2)
    token, nearest = data.inputs[..., 0], data.inputs[..., 1]
    observed = token[token != -1]
    # The seed cast the token channel to int16, truncating every RTT to whole milliseconds.
    assert np.mean(observed != np.round(observed)) > 0.9
    assert (token == -1).any() and (nearest > 0).all()  # gaps stay -1 in token, filled in nearest
    assert len(data.labels) == lens_home.warehouse.query("SELECT count(*) AS n FROM lens_clean_groups")["n"][0]


def _toy_dataset(path: Path, classes: int = 3, per_class: int = 40) -> Path:
    """Separable toy inputs: each class has its own level, so a tiny model learns within an epoch or two."""
    rng = np.random.default_rng(0)

    def split(n):
        y = np.repeat(np.arange(classes), n)
        x = rng.normal(0, 1, (len(y), 100, 1)).astype(np.float32) + y[:, None, None].astype(np.float32)
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = split(per_class), split(10), split(10)
    np.savez(path, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys,
             class_weight=class_weights(yt, classes), input_mean=np.zeros(1), input_std=np.ones(1))
    return path


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from netassets.lens.train import train

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    data = _toy_dataset(tmp_path / "toy.npz")
    # 120 samples: 8 steps an epoch; the cosine schedule makes a resumed run restore its step too.
    common = dict(epochs=3, batch_size=16, lr=0.01, seed=3, **TINY)

    straight = train(TrainConfig(**common), data, tmp_path / "straight")

    resumed_dir = tmp_path / "resumed"
    assert train(TrainConfig(max_steps=11, **common), data, resumed_dir) is None  # stops mid epoch 2
    stopped = load_checkpoint(resumed_dir / "last.pt")
    assert (stopped["epoch"], stopped["batches_done"], stopped["step"]) == (1, 3, 11)
    assert not (resumed_dir / "model.safetensors").exists()  # no final weights from an unfinished run
    resumed = train(TrainConfig(**common), data, resumed_dir)

    assert resumed["steps"] == straight["steps"] == 24
    assert [round(h["train_loss"], 6) for h in resumed["history"]] == [round(h["train_loss"], 6) for h in straight["history"]]
    final_a, final_b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(resumed_dir / "last.pt")
    for name, tensor in final_a["model"].items():
        torch.testing.assert_close(final_b["model"][name], tensor)
    assert resumed["test_accuracy"] == straight["test_accuracy"] > 0.5  # chance is 1/3
    weights_a, _ = load_weights(tmp_path / "straight" / "model.safetensors")
    weights_b, _ = load_weights(resumed_dir / "model.safetensors")
    for name, tensor in weights_a.items():
        torch.testing.assert_close(weights_b[name], tensor)


def _torchrun_train(config: TrainConfig, data: Path, out_dir: Path) -> dict | None:
    """netassets.lens.train under a real torchrun, two processes over gloo; its result.json."""
    import subprocess
    import sys

    config_file = config.write(out_dir.parent / f"{out_dir.name}.json")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "netassets.lens.train", "--config", str(config_file), "--data", str(data),
                           "--out-dir", str(out_dir)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = out_dir / "result.json"
    return json.loads(result.read_text()) if result.is_file() else None


def test_a_run_interrupted_on_two_ranks_resumes_to_the_same_history_and_weights(tmp_path):
    """Each rank holds its own part of an unfinished epoch's loss: the checkpoint keeps their sum
    (it kept rank 0's part, given back to both ranks: counted twice, rank 1's dropped)."""
    data = _toy_dataset(tmp_path / "toy.npz")
    # 120 samples on 2 ranks: 4 steps an epoch each; 6 steps stop in the middle of epoch 2.
    common = dict(epochs=3, batch_size=16, lr=0.01, seed=3, **TINY)
    straight = _torchrun_train(TrainConfig(**common), data, tmp_path / "straight")
    assert _torchrun_train(TrainConfig(max_steps=6, **common), data, tmp_path / "resumed") is None
    resumed = _torchrun_train(TrainConfig(**common), data, tmp_path / "resumed")
    assert straight["world_size"] == resumed["world_size"] == 2 and resumed["steps"] == straight["steps"] == 12
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx([h["train_loss"] for h in straight["history"]],
                                                                          rel=1e-9)
    final_a, final_b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    for name, tensor in final_a["model"].items():
        torch.testing.assert_close(final_b["model"][name], tensor)


def test_checkpoint_from_an_incompatible_config_is_refused(tmp_path, monkeypatch):
    from netassets.lens.train import train

    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    data = _toy_dataset(tmp_path / "toy.npz")
    train(TrainConfig(epochs=1, **TINY), data, tmp_path / "a")
    wider = {**TINY, "d_model": 32}
    with pytest.raises(ValueError, match=r"incompatible with the current config \(d_model: checkpoint 16 vs config 32\)"):
        train(TrainConfig(epochs=1, resume_from=str(tmp_path / "a" / "last.pt"), **wider), data, tmp_path / "b")


def test_bad_training_config_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="unknown channel choice 'rtt'"):
        LensPatchTSTConfig(channels="rtt")
    with pytest.raises(ValueError, match="unknown channel choice"):
        channel_columns("uplink")
    with pytest.raises(ValueError, match="monitor_metric 'accuracy' is not one of"):
        LensPatchTSTConfig(monitor_metric="accuracy")
    with pytest.raises(ValueError, match="patch_length must be in 1..100"):
        LensPatchTSTConfig(patch_length=150)
    with pytest.raises(ValueError, match="must be divisible by num_attention_heads"):
        TrainConfig(d_model=30, num_attention_heads=4)
    assert channel_columns("both") == ("rtt_token", "rtt_nearest")


def test_absent_clusters_are_named_and_weights_balance_the_classes():
    labels = {"train": np.array([0, 1, 1]), "val": np.array([0, 2]), "test": np.array([1])}
    with pytest.raises(ValueError, match=r"cluster\(s\) \[2\] occur in the val days but not in the training days"):
        check_clusters_trainable(labels, num_classes=3)
    assert class_weights(np.array([0, 1, 1]), 3).tolist() == pytest.approx([1.5, 0.75, 0.0])


def test_learning_rate_warms_up_then_decays_to_its_floor():
    config = TrainConfig(lr=0.01, warmup_fraction=0.1, min_lr_ratio=0.1)
    rates = [config.learning_rate(step, 100) for step in range(100)]
    assert rates[0] < rates[5] < rates[9] <= 0.01  # linear warmup over the first 10 steps
    assert rates[10] == pytest.approx(0.01)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))  # then never rises
    assert rates[-1] == pytest.approx(0.001, rel=0.01)
    constant = TrainConfig(lr=0.01, lr_schedule="constant", warmup_fraction=0.1)
    assert constant.learning_rate(99, 100) == 0.01
    with pytest.raises(ValueError, match="lr_schedule 'linear' is not one of"):
        TrainConfig(lr_schedule="linear")


def test_asset_defaults_are_the_training_defaults(tmp_path):
    # One declaration of the recipe: the Launchpad config inherits it, the worker reads it back from JSON.
    assert TrainConfig.of(LensPatchTSTConfig()) == TrainConfig()
    assert set(TrainConfig.model_fields) < set(LensPatchTSTConfig.model_fields)
    assert all(field.description for field in LensPatchTSTConfig.model_fields.values())
    recipe = TrainConfig.of(LensPatchTSTConfig(channels="both", lr=0.02, amp=False, **TINY))
    assert TrainConfig.read(recipe.write(tmp_path / "config.json")) == recipe
    (tmp_path / "bad.json").write_text(json.dumps({**recipe.as_dict(), "amp": "maybe"}))
    with pytest.raises(ValueError, match="amp"):
        TrainConfig.read(tmp_path / "bad.json")


def test_run_identity_ignores_budget_knobs_only():
    base = LensPatchTSTConfig(**TINY)
    assert base.identity() == LensPatchTSTConfig(epochs=50, max_steps=7, nproc=4, **TINY).identity()
    assert base.identity() != LensPatchTSTConfig(**{**TINY, "lr": 0.01}).identity()
    assert json.dumps(base.identity(), sort_keys=True)  # hashable into the run folder name


def test_resume_from_outside_the_models_folder_is_refused_before_anything_runs(netassets_home, warehouse):
    with pytest.raises(ValueError, match=r"resume_from '\.\./\.\./\.\./etc/passwd' must be a path inside"):
        dg.materialize([lens_patchtst], resources={"warehouse": warehouse},
                       run_config={"ops": {"lens_patchtst": {"config": {"resume_from": "../../../etc/passwd"}}}})
