"""The delta formulation: a zero change is persistence (torch and ONNX), a zero network the frozen
linear start; training stops cleanly on a non-finite validation loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netassets.core.training import load_checkpoint, load_weights
from netassets.dwcp import onnx_export, train
from netassets.dwcp.config import TrainConfig
from netassets.dwcp.runs import CHECKPOINT, PREDICTIONS, WEIGHTS
from netassets.dwcp.model import DeltaForecaster, build_model
from netassets.dwcp.windows import Windows, build_windows, chronological_split

TINY = {"lstm_sizes": [8, 8, 8], "dense_sizes": [8, 8, 8], "batch_size": 128, "epochs": 2}


def _windows(n: int = 400, seed: int = 0) -> Windows:
    """Two features (a positive AR(1) 'throughput' and a clock); the target is the first."""
    import polars as pl

    rng = np.random.default_rng(seed)
    level = np.empty(n)
    level[0] = 10.0
    for t in range(1, n):
        level[t] = 10 + 0.8 * (level[t - 1] - 10) + rng.normal(0, 1)
    frame = pl.DataFrame({"link": "a", "t": np.arange(n), "thr": level, "clock": np.arange(n) % 24.0})
    w = build_windows(frame, link_columns=["link"], time_column="t", features=["thr", "clock"], targets=["thr"],
                      window=20, horizon=1, step=1)
    w.split = chronological_split(w.target_time)
    return w


def _scaling(w: Windows) -> dict:
    x_mean, x_scale = train.standardise(w.x)
    y_mean, y_scale = train.standardise(w.y)
    return {"x_mean": x_mean.tolist(), "x_scale": x_scale.tolist(), "y_mean": y_mean.tolist(),
            "y_scale": y_scale.tolist(), "level_floor": [0.5], "delta_scale": [0.3]}


def test_a_zero_change_reproduces_persistence_in_torch_and_onnx(tmp_path):
    w = _windows()
    scaling = _scaling(w)
    arch = {"n_features": 2, "n_targets": 1, "lstm_sizes": [8, 8, 8], "dense_sizes": [8, 8, 8], "dropout": 0.3,
            "dense2_dropout": 0.21, "window": 20, "target_index": [0]}
    model = build_model(arch, scaling).eval()  # last layer and linear path start at zero
    x = ((w.x - np.array(scaling["x_mean"])) / np.array(scaling["x_scale"])).astype(np.float32)
    with torch.no_grad():
        assert float(model.delta(torch.from_numpy(x)).abs().max()) == 0.0
        scaled = model(torch.from_numpy(x)).numpy().astype(np.float64)
    # The inverse scaling train.py applies to every prediction:
    levels = scaled * np.array(scaling["y_scale"]) + np.array(scaling["y_mean"])
    np.testing.assert_allclose(levels, w.last, rtol=1e-5, atol=1e-4)
    assert np.abs(levels - w.y).max() > 0.1  # persistence is not the truth: the check above can fail

    path = onnx_export.export(model, 20, 2, tmp_path / "zero.onnx")
    from_onnx = onnx_export.session(path).run([onnx_export.OUTPUT], {onnx_export.INPUT: x})[0]
    np.testing.assert_allclose(from_onnx * np.array(scaling["y_scale"]) + np.array(scaling["y_mean"]), w.last,
                               rtol=1e-5, atol=1e-4)

    # A non-zero change moves the forecast by change * delta_scale * window level, in original units.
    with torch.no_grad():
        model.net.members[0].fc_out.bias.fill_(1.0)
        moved = model(torch.from_numpy(x[:1])).numpy()[0, 0] * scaling["y_scale"][0] + scaling["y_mean"][0]
    level = max(np.abs(w.x[0, :, 0]).mean(), 0.5)
    assert moved == pytest.approx(w.last[0, 0] + 0.3 * level, rel=1e-5)


def _train(tmp_path, w: Windows, **overrides):
    path = w.save(tmp_path / "windows.npz")
    out = tmp_path / "run"
    config = TrainConfig(**{**TINY, **overrides}).write(tmp_path / "config.json")
    train.main([f"--config={config}", f"--windows={path}", f"--out={out}"])
    return out


def test_training_writes_level_predictions_for_the_test_split(tmp_path):
    w = _windows()
    out = _train(tmp_path, w)
    with np.load(out / PREDICTIONS) as saved:
        index, predicted = saved["index"], saved["prediction"]
    assert (index == w.part("test")).all() and predicted.shape == (len(index), 1)
    # The model starts as the ridge fit and only the validation-best epoch is kept: it is a
    # forecast of levels, far closer to the truth than the series' spread.
    assert np.sqrt(((predicted - w.y[index]) ** 2).mean()) < w.y[index].std()
    checkpoint = load_checkpoint(out / CHECKPOINT)
    assert set(checkpoint["scaler"]) == set(DeltaForecaster.SCALING)
    # The final weights also travel as safetensors, the same tensors as the best checkpoint.
    weights, info = load_weights(out / WEIGHTS)
    assert weights.keys() == checkpoint["model"].keys() and info["epoch"] == str(checkpoint["epoch"])
    assert all(torch.equal(weights[k], checkpoint["model"][k]) for k in weights)


def test_a_non_finite_validation_loss_names_the_windows_file(tmp_path):
    w = _windows()
    w.x[w.part("val")[0], -1, 0] = np.inf  # a bad value that reached the validation windows
    with pytest.raises(ValueError, match=r"windows\.npz: validation loss nan before training"):
        _train(tmp_path, w)


def _clock_windows(n: int = 600, seed: int = 1) -> Windows:
    """A 'throughput' whose level steps with the hour, a noisy copy of it, and the two clock features."""
    import polars as pl

    rng = np.random.default_rng(seed)
    minute = np.arange(n)
    hour, weekday = (minute // 60) % 24, (minute // 300 + 4) % 7  # a fast weekday: both kinds of day occur
    level = 500 + 20 * hour
    frame = pl.DataFrame({"link": "a", "t": minute * 60, "thr": level + rng.normal(0, 50, n),
                          "cwnd": 2 * level + rng.normal(0, 100, n), "time_of_day": hour.astype(float),
                          "day_of_week": weekday.astype(float)})
    w = build_windows(frame, link_columns=["link"], time_column="t", features=["thr", "cwnd", "time_of_day", "day_of_week"],
                      targets=["thr"], window=20, horizon=1, step=60)
    w.split = chronological_split(w.target_time)
    return w


def test_a_zero_network_gives_exactly_the_frozen_linear_start_in_torch_and_onnx(tmp_path):
    """The absolute path (every feature's window, the hour one-hot, the weekend flag, same-hour
    means) blended with the relative one: with the network's output at zero, the forecast is that
    linear formula, computed here again in numpy, and ONNX agrees."""
    w = _clock_windows()
    x_mean, x_scale = train.standardise(w.x)
    y_mean, y_scale = train.standardise(w.y)
    scaling = {"x_mean": x_mean.tolist(), "x_scale": x_scale.tolist(), "y_mean": y_mean.tolist(),
               "y_scale": y_scale.tolist(), "level_floor": [1.0], "delta_scale": [0.1]}
    arch = {"n_features": 4, "n_targets": 1, "lstm_sizes": [8, 8, 8], "dense_sizes": [8, 8, 8], "dropout": 0.3,
            "dense2_dropout": 0.21, "window": 20, "target_index": [0], "time_index": 2, "weekday_index": 3}
    model = build_model(arch, scaling).eval()
    rng = np.random.default_rng(0)
    w_rel, w_abs = rng.normal(0, 0.1, (1, 20)), rng.normal(0, 0.05, (1, model.linear_abs.in_features))
    with torch.no_grad():
        model.linear.weight.copy_(torch.from_numpy(w_rel))
        model.linear.bias.fill_(0.2)
        model.linear_abs.weight.copy_(torch.from_numpy(w_abs))
        model.linear_abs.bias.fill_(-0.1)
        model.blend.fill_(0.75)
    x = ((w.x - x_mean) / x_scale).astype(np.float32)
    with torch.no_grad():
        levels = model(torch.from_numpy(x)).numpy().astype(np.float64) * y_scale + y_mean

    xs = x.astype(np.float64)
    hour = w.x[:, :, 2].astype(int)
    same = (hour == hour[:, -1:]).astype(float)
    same_mean = (xs * same[:, :, None]).sum(1) / same.sum(1, keepdims=True)
    crosses = (same.sum(1) < 20).astype(float)[:, None]
    features = np.hstack([xs.reshape(len(xs), -1), np.eye(24)[hour[:, -1]], (w.x[:, -1, 3] >= 5)[:, None],
                          same_mean, same_mean * crosses, crosses])
    assert crosses.any() and not crosses.all() and (w.x[:, -1, 3] >= 5).any()
    absolute = (features @ w_abs.T - 0.1) * y_scale + y_mean
    last, level = w.x[:, -1, :1].astype(np.float64), np.maximum(np.abs(w.x[:, :, :1]).mean(1), 1.0)
    relative = last + level * 0.1 * ((w.x[:, :, 0] / level - 1) @ w_rel.T + 0.2)
    np.testing.assert_allclose(levels, 0.25 * relative + 0.75 * absolute, rtol=1e-4, atol=1e-2)

    path = onnx_export.export(model, 20, 4, tmp_path / "linear.onnx")
    assert onnx_export.parity(path, model, x) < 1e-4


def test_training_picks_the_blend_on_validation_and_beats_the_window_mean(tmp_path):
    w = _clock_windows(n=1500)
    out = _train(tmp_path, w, epochs=1)
    history = json.loads((out / "history.json").read_text())
    start = history["linear_start"]
    assert start["blend"][0] in train.BLEND_GRID
    scores = start["blend_val_mse"][0]
    assert scores[str(start["blend"][0])] == min(scores.values())
    # The level is a step function of the hour: the absolute path, which reads the hour, must win here.
    assert start["blend"][0] > 0


def test_too_few_training_windows_for_the_absolute_path_keep_the_relative_one(tmp_path):
    w = _windows(n=70)  # 35 training windows: enough for a 20-lag AR, not for 2 features x 20 lags
    assert 20 < len(w.part("train")) <= 40
    out = _train(tmp_path, w, epochs=1)
    start = json.loads((out / "history.json").read_text())["linear_start"]
    assert start["blend"] == [0.0] and start["absolute_alphas"] == []


def test_an_ensemble_forecasts_its_members_mean_correction_in_torch_and_onnx(tmp_path):
    """Three members with different last layers: delta is the mean of the members' deltas (not
    any one member's), and the exported graph holds all three (parity with torch)."""
    w = _windows()
    scaling = _scaling(w)
    arch = {"n_features": 2, "n_targets": 1, "lstm_sizes": [8, 8, 8], "dense_sizes": [8, 8, 8], "dropout": 0.3,
            "dense2_dropout": 0.21, "window": 20, "target_index": [0], "members": 3}
    model = build_model(arch, scaling).eval()
    assert len(model.net.members) == 3
    with torch.no_grad():
        for k, member in enumerate(model.net.members):
            torch.nn.init.normal_(member.fc_out.weight, std=0.5)
            member.fc_out.bias.fill_(0.3 * k)
        model.net_share.fill_(0.6)
    x = torch.from_numpy(((w.x - np.array(scaling["x_mean"])) / np.array(scaling["x_scale"])).astype(np.float32))
    with torch.no_grad():
        each = model.member_deltas(x)
        assert each.shape == (3, len(x), 1)
        np.testing.assert_allclose(model.delta(x).numpy(), each.mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)
        assert all(float((model.delta(x) - each[k]).abs().max()) > 0.01 for k in range(3))
    path = onnx_export.export(model, 20, 2, tmp_path / "ensemble.onnx")
    assert onnx_export.parity(path, model, x.numpy()) < 1e-4


def test_training_fits_every_member_and_stores_them_in_the_checkpoint(tmp_path):
    w = _windows()
    out = _train(tmp_path, w, ensemble_members=2, epochs=3)
    checkpoint = load_checkpoint(out / CHECKPOINT)
    assert checkpoint["arch"]["members"] == 2
    model = onnx_export.load_model(checkpoint)
    first, second = (dict(m.named_parameters()) for m in model.net.members)
    # Own initialisations: the members differ (an ensemble of copies would reduce no variance).
    assert not torch.equal(first["lstms.0.weight_ih_l0"], second["lstms.0.weight_ih_l0"])
    history = json.loads((out / "history.json").read_text())
    assert history["best_epoch"] > 0 and history["net_share"] in train.NET_SHARE_GRID
    # Both members trained: their last layers (zero before training) moved.
    assert all(float(m.fc_out.weight.detach().abs().max()) > 0 for m in model.net.members)


def test_a_checkpoint_from_before_the_ensemble_loads_as_its_one_member(tmp_path):
    """A production checkpoint written by the single-network model (no ``members`` in its arch,
    parameters under ``net.``) still loads, and forecasts what its one network forecasts."""
    w = _windows()
    checkpoint = load_checkpoint(_train(tmp_path, w, ensemble_members=1, epochs=2) / CHECKPOINT)
    current = onnx_export.load_model(checkpoint)
    old_arch = {k: v for k, v in checkpoint["arch"].items() if k != "members"}
    old_state = {(k.replace("net.members.0.", "net.", 1)): v for k, v in checkpoint["model"].items()}
    assert any(k.startswith("net.lstms.") for k in old_state)
    old = onnx_export.load_model({**checkpoint, "arch": old_arch, "model": old_state})
    x = torch.from_numpy(w.x[:32].astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(old(x), current(x))


def test_parity_is_infinite_when_the_exported_model_gives_nan(tmp_path):
    """``max(worst, nan)`` kept ``worst``: an ONNX file whose every output was NaN passed the gate at 0.0."""
    import math

    w = _windows()
    scaling = _scaling(w)
    arch = {"n_features": 2, "n_targets": 1, "lstm_sizes": [8, 8, 8], "dense_sizes": [8, 8, 8], "dropout": 0.3,
            "dense2_dropout": 0.21, "window": 20, "target_index": [0]}
    torch.manual_seed(0)
    model = build_model(arch, scaling).eval()
    x = ((w.x - np.array(scaling["x_mean"])) / np.array(scaling["x_scale"])).astype(np.float32)
    assert onnx_export.parity(onnx_export.export(model, 20, 2, tmp_path / "good.onnx"), model, x) < 1e-4
    broken = build_model(arch, scaling).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.y_scale.fill_(float("nan"))
    assert onnx_export.parity(onnx_export.export(broken, 20, 2, tmp_path / "nan.onnx"), model, x) == math.inf
