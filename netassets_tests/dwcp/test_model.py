"""The delta formulation: a zero change is persistence (torch and ONNX); training stops cleanly on
a non-finite validation loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netassets.core.training import load_checkpoint
from netassets.dwcp import onnx_export, train
from netassets.dwcp.artifacts import CHECKPOINT, PREDICTIONS
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
        model.net.fc_out.bias.fill_(1.0)
        moved = model(torch.from_numpy(x[:1])).numpy()[0, 0] * scaling["y_scale"][0] + scaling["y_mean"][0]
    level = max(np.abs(w.x[0, :, 0]).mean(), 0.5)
    assert moved == pytest.approx(w.last[0, 0] + 0.3 * level, rel=1e-5)


def _train(tmp_path, w: Windows, **overrides):
    path = w.save(tmp_path / "windows.npz")
    out = tmp_path / "run"
    train.main([f"--windows_path={path}", f"--out_dir={out}", *(f"--{k}={v}" for k, v in {**TINY, **overrides}.items())])
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


def test_a_non_finite_validation_loss_names_the_windows_file(tmp_path):
    w = _windows()
    w.x[w.part("val")[0], -1, 0] = np.inf  # a bad value that reached the validation windows
    with pytest.raises(ValueError, match=r"windows\.npz: validation loss nan before training"):
        _train(tmp_path, w)
