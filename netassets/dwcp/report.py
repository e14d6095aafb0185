"""Scores for the bandwidth predictor, next to its baselines, and the seed-shaped report JSON.

MAPE is the seed's formula (mean |err| / |actual|, in %) over rows whose actual value is not
zero; the rows left out are counted. ``target_met`` applies the seed's own rule (average
correlation >= 0.98 and average MAPE <= 5 %) to the model's held-out scores, whatever they are.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

MODEL = "BandwidthLSTM"
PERSISTENCE = "persistence (last value)"
ORACLE = "noise-free oracle (ceiling)"
SEED_TARGET = {"correlation": 0.98, "mape": 5.0}
SEED_CLAIMED = {"correlation": 0.9908, "mape": 2.63}  # what the guide says its model reached


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None  # JSON has no NaN


def scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    actual, predicted = np.asarray(actual, np.float64), np.asarray(predicted, np.float64)
    error = predicted - actual
    nonzero = actual != 0
    ss_tot = ((actual - actual.mean()) ** 2).sum()
    corr = np.nan
    if actual.std() > 0 and predicted.std() > 0:
        corr = np.corrcoef(actual, predicted)[0, 1]
    return {
        "mae": _finite(np.abs(error).mean()),
        "rmse": _finite(np.sqrt((error ** 2).mean())),
        "mape": _finite(np.abs(error[nonzero] / actual[nonzero]).mean() * 100) if nonzero.any() else None,
        "r2_score": _finite(1 - (error ** 2).sum() / ss_tot) if ss_tot > 0 else None,
        "correlation": _finite(corr),
        "mape_rows_excluded": int((~nonzero).sum()),
    }


def overall(per_target: Mapping[str, Mapping[str, float | None]]) -> dict:
    corrs = [m["correlation"] for m in per_target.values()]
    mapes = [m["mape"] for m in per_target.values()]
    # A target without a correlation (a constant prediction) counts as 0, not as missing.
    avg_corr = float(np.mean([c if c is not None else 0.0 for c in corrs]))
    avg_mape = float(np.mean(mapes)) if None not in mapes else None
    met = avg_mape is not None and avg_corr >= SEED_TARGET["correlation"] and avg_mape <= SEED_TARGET["mape"]
    return {"average_correlation": avg_corr, "average_mape": avg_mape, "target_met": bool(met),
            "accuracy_percent": avg_corr * 100}


def evaluate(actual: np.ndarray, predictions: Mapping[str, np.ndarray], targets: Sequence[str]) -> dict:
    """{predictor: {"per_target": {target: scores}, "overall": {...}}} for every predictor given."""
    result = {}
    for name, predicted in predictions.items():
        per_target = {t: scores(actual[:, i], predicted[:, i]) for i, t in enumerate(targets)}
        result[name] = {"per_target": per_target, "overall": overall(per_target)}
    return result


def score_rows(evaluation: Mapping[str, dict]) -> list[dict]:
    """One row per predictor and target, for a markdown table."""
    rows = []
    for name, result in evaluation.items():
        for target, m in result["per_target"].items():
            rows.append({"predictor": name, "target": target, "MAE": m["mae"], "RMSE": m["rmse"],
                         "MAPE %": m["mape"], "R2": m["r2_score"], "corr": m["correlation"]})
    return rows


def overall_rows(evaluation: Mapping[str, dict]) -> list[dict]:
    rows = [{"predictor": name, "avg corr": r["overall"]["average_correlation"],
             "avg MAPE %": r["overall"]["average_mape"], "target met": r["overall"]["target_met"]}
            for name, r in evaluation.items()]
    rows.append({"predictor": "seed's target (required)", "avg corr": SEED_TARGET["correlation"],
                 "avg MAPE %": SEED_TARGET["mape"], "target met": "-"})
    rows.append({"predictor": "seed's claimed result", "avg corr": SEED_CLAIMED["correlation"],
                 "avg MAPE %": SEED_CLAIMED["mape"], "target met": "claimed"})
    return rows


def beats(evaluation: Mapping[str, dict], model: str, baseline: str) -> dict[str, bool]:
    """Per target: does the model's RMSE beat the baseline's?"""
    ours, theirs = evaluation[model]["per_target"], evaluation[baseline]["per_target"]
    # A non-finite RMSE is stored as None: it beats nothing.
    return {t: ours[t]["rmse"] is not None and (theirs[t]["rmse"] is None or ours[t]["rmse"] < theirs[t]["rmse"])
            for t in ours}


def document(evaluation: Mapping[str, dict], *, version: str, windows, history: Mapping, model_size_mb: float) -> dict:
    """bandwidth_predictor_report.json: the seed's keys, then the baselines and what was trained on."""
    model = evaluation[MODEL]["overall"]
    return {
        "model": "bandwidth_predictor", "version": version, "success": model["target_met"],
        "achieved_metrics": {"correlation": model["average_correlation"], "mape": model["average_mape"],
                             "accuracy_percent": model["accuracy_percent"]},
        "target_metrics": SEED_TARGET, "training_time_seconds": history["training_time_seconds"],
        "model_size_mb": model_size_mb, "horizon_steps": windows.horizon, "window": windows.window,
        "test_windows": int((windows.split == 2).sum()), "performance_metrics": evaluation[MODEL],
        "baselines": {k: v for k, v in evaluation.items() if k != MODEL},
        "beats_persistence_rmse": beats(evaluation, MODEL, PERSISTENCE) if PERSISTENCE in evaluation else {},
        "training_partitions": windows.stats.get("partitions", []),
    }


def scatter_figure(actual: np.ndarray, predicted: np.ndarray, oracle: np.ndarray | None, targets: Sequence[str]):
    from netassets.core.plots import plt  # Agg backend, set there

    fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 4), squeeze=False)
    for i, (ax, target) in enumerate(zip(axes[0], targets)):
        ax.scatter(actual[:, i], predicted[:, i], s=3, alpha=0.3, label="model")
        if oracle is not None:
            ax.scatter(actual[:, i], oracle[:, i], s=3, alpha=0.3, label="noise-free oracle")
        low, high = float(actual[:, i].min()), float(actual[:, i].max())
        ax.plot([low, high], [low, high], "k--", linewidth=1)
        ax.set(title=target, xlabel="actual", ylabel="predicted")
    axes[0][0].legend(markerscale=4)
    fig.suptitle("held-out windows: predicted vs actual")
    return fig


def history_figure(epochs: Sequence[Mapping]):
    from netassets.core.plots import plt  # Agg backend, set there

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([e["epoch"] for e in epochs], [e["train_loss"] for e in epochs], label="train")
    ax.plot([e["epoch"] for e in epochs], [e["val_loss"] for e in epochs], label="validation")
    ax.set(xlabel="epoch", ylabel="MSE (standardised)", title="training curves", yscale="log")
    ax.legend()
    return fig
