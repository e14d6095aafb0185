"""Scores for the bandwidth predictor, next to its baselines, and the seed-shaped report JSON.

``model_evaluation`` is the verdict of record (core.evaluation): the model and every baseline of
``baselines.all_baselines`` on the same test windows, judged on ``mean_nrmse``, the mean over
targets of test RMSE / test std of that target (scale-free, so rtt in ms and packet loss as a
fraction weigh alike; with one target it orders predictors exactly as RMSE does). Per-target
RMSEs sit beside it. The generator's noise-free oracle is a ceiling, not a baseline: it is
shown (only on generated data) and never counted as the strongest baseline.

MAPE is the seed's formula (mean |err| / |actual|, in %) over rows whose actual value is not
zero; the rows left out are counted. ``target_met`` applies the seed's own rule (average
correlation >= 0.98 and average MAPE <= 5 %) to the model's held-out scores, whatever they are.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from netassets.core.evaluation import Evaluation
from netassets.dwcp import baselines
from netassets.dwcp.windows import Windows

MODEL = "BandwidthLSTM"
VERDICT_METRIC = "mean_nrmse"
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


def forecasts(windows: Windows, index: np.ndarray, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """The model's, every baseline's and (generated data only) the oracle's forecasts at ``index``."""
    if not len(index):
        raise ValueError(f"no test windows for {', '.join(windows.link_names)}: nothing to judge the model on")
    found = {MODEL: np.asarray(predicted, np.float64), **baselines.all_baselines(windows, index)}
    if "oracle" in windows.extra:
        found[ORACLE] = windows.extra["oracle"][index].astype(np.float64)
    return found


def model_evaluation(windows: Windows, index: np.ndarray, predicted: np.ndarray, split_rule: str) -> Evaluation:
    """The model against every baseline on the test windows at ``index`` (one run, same rows)."""
    candidates = {k: v for k, v in forecasts(windows, index, predicted).items() if k != ORACLE}
    actual = windows.y[index].astype(np.float64)
    spread = actual.std(axis=0)
    notes = [f"{VERDICT_METRIC}: mean over targets of test RMSE / test std of the target; horizon "
             f"{windows.horizon} step(s), window {windows.window}"]
    flat = [t for t, s in zip(windows.targets, spread) if not s > 0]
    if flat:
        notes.append(f"constant on the test rows, left out of {VERDICT_METRIC}: {', '.join(flat)}")
    judged = set(windows.link[index].tolist())
    unjudged = [name for i, name in enumerate(windows.link_names) if i in set(windows.link.tolist()) - judged]
    if unjudged:
        notes.append(f"{len(unjudged)} link(s) have no test windows (their series end before the test period) and "
                     f"are judged on none: {', '.join(unjudged[:10])}{' ...' if len(unjudged) > 10 else ''}")
    varying = spread > 0
    scores = {}
    for name, forecast in candidates.items():
        rmse = np.sqrt(((forecast - actual) ** 2).mean(axis=0))
        nrmse = float((rmse[varying] / spread[varying]).mean()) if varying.any() else math.nan
        scores[name] = {VERDICT_METRIC: nrmse, **{f"rmse_{t}": float(v) for t, v in zip(windows.targets, rmse)}}
    values = [s[VERDICT_METRIC] for n, s in scores.items() if n != MODEL]
    if len(values) > 1 and len(set(values)) == 1:
        notes.append(f"every baseline ties at {values[0]:.4g}: the data cannot tell them apart")
    return Evaluation(model=MODEL, metric=VERDICT_METRIC, higher_is_better=False, scores=scores, rows=len(index),
                      split_rule=split_rule, notes=tuple(notes))


def score_rows(evaluation: Mapping[str, dict]) -> list[dict]:
    """One row per predictor and target, for a markdown table."""
    rows = []
    for name, result in evaluation.items():
        for target, m in result["per_target"].items():
            rows.append({"predictor": name, "target": target, "split": "test", "MAE": m["mae"], "RMSE": m["rmse"],
                         "MAPE %": m["mape"], "R2": m["r2_score"], "corr": m["correlation"]})
    return rows


def overall_rows(evaluation: Mapping[str, dict]) -> list[dict]:
    rows = [{"predictor": name, "split": "test", "avg corr": r["overall"]["average_correlation"],
             "avg MAPE %": r["overall"]["average_mape"], "target met": r["overall"]["target_met"]}
            for name, r in evaluation.items()]
    rows.append({"predictor": "seed's target (required)", "split": "test", "avg corr": SEED_TARGET["correlation"],
                 "avg MAPE %": SEED_TARGET["mape"], "target met": "-"})
    rows.append({"predictor": "seed's claimed result", "split": "not stated (the seed scored its training set)", "avg corr": SEED_CLAIMED["correlation"],
                 "avg MAPE %": SEED_CLAIMED["mape"], "target met": "claimed"})
    return rows


def beats(evaluation: Mapping[str, dict], model: str, baseline: str) -> dict[str, bool]:
    """Per target: does the model's RMSE beat the baseline's?"""
    ours, theirs = evaluation[model]["per_target"], evaluation[baseline]["per_target"]
    # A non-finite RMSE is stored as None: it beats nothing.
    return {t: ours[t]["rmse"] is not None and (theirs[t]["rmse"] is None or ours[t]["rmse"] < theirs[t]["rmse"])
            for t in ours}


def document(evaluation: Mapping[str, dict], verdict: Evaluation, *, version: str, windows, history: Mapping,
             model_size_mb: float) -> dict:
    """bandwidth_predictor_report.json: the seed's keys (all test-split figures), then the
    baselines, the verdict of record and what was trained on."""
    model = evaluation[MODEL]["overall"]
    return {
        "model": "bandwidth_predictor", "version": version, "success": model["target_met"],
        "achieved_metrics": {"correlation": model["average_correlation"], "mape": model["average_mape"],
                             "accuracy_percent": model["accuracy_percent"]},
        "metrics_split": "test", "split_rule": verdict.split_rule,
        "target_metrics": SEED_TARGET, "training_time_seconds": history["training_time_seconds"],
        "model_size_mb": model_size_mb, "horizon_steps": windows.horizon, "window": windows.window,
        "test_windows": verdict.rows, "performance_metrics": evaluation[MODEL],
        "baselines": {k: v for k, v in evaluation.items() if k != MODEL},
        "beats_rmse": {name: beats(evaluation, MODEL, name) for name in evaluation if name not in (MODEL, ORACLE)},
        "verdict": verdict.to_dict(),
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
