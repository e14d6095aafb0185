"""The simple forecasters every BandwidthLSTM is judged against, computed from the same windows.

Each baseline sees only a window's own history of the target (never the future, never another
split's rows) and returns one forecast per window and target, in original units:

- persistence: the last observed value (the forecast a level-predicting LSTM must beat first);
- mean of the last k samples (k = 5, as in throughput predictors for adaptive streaming);
- harmonic mean of the last k samples (MPC/Pensieve's throughput predictor; robust to spikes);
- ridge AR(p): a linear model of the last p values, fitted on the training split, its penalty
  chosen on the validation split. A model that cannot beat a linear AR is not worth its weights.

No torch here: the report asset and the benchmark import this module.
"""

from __future__ import annotations

import numpy as np

from netassets.dwcp.windows import Windows

PERSISTENCE = "persistence (last value)"
MEAN_K = 5
HARMONIC_K = 5
AR_ORDER = 20
RIDGE_ALPHAS = (1e-3, 1e-1, 1e1, 1e3)  # per window, on standardised lags
# A throughput of 0 would make the harmonic mean 0 whatever the other samples are.
HARMONIC_FLOOR = 1e-3


def mean_name(k: int = MEAN_K) -> str:
    return f"mean of last {k}"


def harmonic_name(k: int = HARMONIC_K) -> str:
    return f"harmonic mean of last {k}"


def ridge_name(order: int) -> str:
    return f"ridge AR({order})"


def target_history(windows: Windows) -> np.ndarray:
    """(n, window, targets) float64: each target's own values inside each window."""
    missing = [t for t in windows.targets if t not in windows.features]
    if missing:
        raise ValueError(f"targets {missing} are not input features: no baseline (and no delta model) can see "
                         f"their last value")
    columns = [windows.features.index(t) for t in windows.targets]
    return windows.x[:, :, columns].astype(np.float64)


def fit_ridge(inputs: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge on standardised inputs with an unpenalised intercept, returned in the inputs' own
    units: (weights (p, k), intercept (k,)) with ``forecast = inputs @ weights + intercept``."""
    y = y.reshape(len(y), -1)
    mean, scale = inputs.mean(axis=0), inputs.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (inputs - mean) / scale
    gram = z.T @ z + alpha * len(z) * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, z.T @ (y - y.mean(axis=0))) / scale[:, None]
    return weights, y.mean(axis=0) - mean @ weights


def fit_ridge_on_validation(inputs: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray,
                            alphas: tuple[float, ...] = RIDGE_ALPHAS):
    """The ridge fit on ``train`` rows whose penalty (from ``alphas``) does best on ``val`` rows:
    (weights, intercept, alpha)."""
    if len(train) <= inputs.shape[1] or not len(val):
        raise ValueError(f"a ridge model of {inputs.shape[1]} inputs needs more training rows than inputs and a "
                         f"validation split: train/val hold {len(train)}/{len(val)}")
    best = None
    for alpha in alphas:
        weights, intercept = fit_ridge(inputs[train], y[train], alpha)
        mse = float(((inputs[val] @ weights + intercept - y[val].reshape(len(val), -1)) ** 2).mean())
        if best is None or mse < best[0]:
            best = (mse, weights, intercept, alpha)
    return best[1:]


def ridge_ar(windows: Windows, order: int = AR_ORDER) -> tuple[np.ndarray, dict]:
    """Per-target ridge AR forecasts for every window, and the penalty chosen per target."""
    history = target_history(windows)[:, -order:]
    train, val = windows.part("train"), windows.part("val")
    forecasts, chosen = np.empty((len(windows), len(windows.targets))), {}
    for i, target in enumerate(windows.targets):
        weights, intercept, chosen[target] = fit_ridge_on_validation(
            history[:, :, i], windows.y[:, i].astype(np.float64), train, val)
        forecasts[:, i] = (history[:, :, i] @ weights + intercept)[:, 0]
    return forecasts, chosen


def all_baselines(windows: Windows, index: np.ndarray) -> dict[str, np.ndarray]:
    """{name: (len(index), targets) forecasts} for the windows at ``index``, in original units."""
    history = target_history(windows)[index]
    recent_mean, recent_harmonic = history[:, -MEAN_K:], np.maximum(history[:, -HARMONIC_K:], HARMONIC_FLOOR)
    ridge, _ = ridge_ar(windows, min(AR_ORDER, windows.window))
    return {
        PERSISTENCE: history[:, -1],
        mean_name(): recent_mean.mean(axis=1),
        harmonic_name(): HARMONIC_K / (1.0 / recent_harmonic).sum(axis=1),
        ridge_name(min(AR_ORDER, windows.window)): ridge[index],
    }
