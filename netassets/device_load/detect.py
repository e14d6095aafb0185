"""Anomalies from forecast errors: Embed-LSTM predictions, |prediction - actual|, DBSCAN per router.

DBSCAN labels a point -1 (anomaly) when fewer than ``min_samples`` error vectors lie within
``eps`` of it. One day holds only 24 hourly points per router, too few for a density, so by
default each router's points are clustered together with that router's held-out validation
errors saved in the checkpoint (``reference="validation"``): normal days then sit in the dense
cluster and only the partition's own points are labelled. ``reference="partition"`` clusters
the partition's points alone, as the seed did on its whole test set.

``eps_quantile`` (optional) replaces the fixed ``eps`` per router by a quantile of the
k-distance (k = ``min_samples``) among that router's held-out errors: the classic k-distance
rule for choosing DBSCAN's radius, so a noisy router gets a wider radius than a quiet one.
It needs ``reference="validation"``.

The seed's fallback (optional, ``fallback_mean_error``): when DBSCAN finds no anomaly but the
mean error is above the threshold (the seed used 4.0), every point is an anomaly: the whole
series has drifted away from what the model knows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from netassets.core.training import load_checkpoint
from netassets.device_load.features import Scalers, build_windows
from netassets.device_load.model import EmbedLSTM, ModelConfig, predict

ANOMALY = -1


def dbscan_labels(errors: np.ndarray, eps: float, min_samples: int, reference: np.ndarray | None = None,
                  fallback_mean_error: float | None = None) -> np.ndarray:
    """DBSCAN labels of ``errors`` (n, d), clustered together with ``reference`` points if given."""
    if not len(errors):
        return np.zeros(0, dtype=np.int64)
    reference = np.zeros((0, errors.shape[1])) if reference is None else reference
    labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(np.vstack([reference, errors]))[len(reference):]
    if fallback_mean_error is not None and not (labels == ANOMALY).any() and abs(errors.mean()) > fallback_mean_error:
        labels = np.full(len(errors), ANOMALY)
    return labels.astype(np.int64)


def kdistance_eps(reference: np.ndarray, min_samples: int, quantile: float) -> float:
    """The ``quantile`` of each reference point's distance to its ``min_samples``-th neighbour (itself included)."""
    if not 0 < quantile < 1:
        raise ValueError(f"eps_quantile must be in (0, 1), got {quantile}")
    if len(reference) < min_samples:
        raise ValueError(f"{len(reference)} reference errors are too few for min_samples={min_samples}")
    distances, _ = NearestNeighbors(n_neighbors=min_samples).fit(reference).kneighbors(reference)
    return float(np.quantile(distances[:, -1], quantile))


@dataclass
class Detector:
    model: EmbedLSTM
    scalers: Scalers
    val_errors: np.ndarray
    val_router_id: np.ndarray

    @classmethod
    def load(cls, path: Path) -> "Detector":
        if not path.is_file():
            raise FileNotFoundError(f"no trained model at {path}: materialise device_load_model first")
        state = load_checkpoint(path)
        model = EmbedLSTM(ModelConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
        return cls(model, Scalers.from_dict(state["scalers"]), state["val_errors"].numpy(), state["val_router_id"].numpy())


def detect(frame: pl.DataFrame, day: dt.date | None, detector: Detector, eps: float, min_samples: int,
           reference: str = "validation", fallback_mean_error: float | None = None,
           eps_quantile: float | None = None) -> tuple[pl.DataFrame, dict[str, str]]:
    """Score the rows of ``day`` in ``frame`` (features, previous days as window context; None = all).

    Returns the seed's output columns (time, metric values, actual, predictions, label) per
    router plus errors, and {router: reason} for routers that could not be scored.
    """
    if reference not in ("validation", "partition"):
        raise ValueError(f"reference must be 'validation' or 'partition', got {reference!r}")
    if eps_quantile is not None and reference != "validation":
        raise ValueError("eps_quantile needs reference='validation' (held-out errors to measure)")
    windows, skipped = build_windows(frame, detector.scalers)
    if day is not None:
        windows = windows.take(windows.target_time.astype("datetime64[D]") == np.datetime64(day, "D"))
    predicted = predict(detector.model, windows.x, windows.router_id)
    errors = np.abs(predicted - windows.actual)
    labels, in_units = np.zeros(len(windows), dtype=np.int64), np.zeros_like(predicted)
    for router_id in np.unique(windows.router_id):
        mine = windows.router_id == router_id
        ref = detector.val_errors[detector.val_router_id == router_id] if reference == "validation" else None
        radius = eps if eps_quantile is None else kdistance_eps(ref, min_samples, eps_quantile)
        labels[mine] = dbscan_labels(errors[mine], radius, min_samples, ref, fallback_mean_error)
        in_units[mine] = detector.scalers.per_router[detector.scalers.routers[router_id]].unscale_targets(predicted[mine])
    rows = frame[windows.row.tolist()] if len(windows) else frame.clear()
    seen_today = set((frame if day is None else frame.filter(pl.col("timeslot").dt.date() == day))["router"].to_list())
    skipped = {r: why for r, why in skipped.items() if r in seen_today}
    scored = set(rows["router"].to_list())
    for router in sorted(seen_today - scored - set(skipped)):
        skipped[router] = f"fewer than {detector.scalers.window} consecutive steps before its points"
    table = rows.select("day", "region", "router", pl.col("timeslot").alias("time"), "max_metric_value", "mean_metric_value").with_columns(
        pl.Series("actual_max", windows.actual[:, 0], dtype=pl.Float64),
        pl.Series("actual_mean", windows.actual[:, 1], dtype=pl.Float64),
        pl.Series("predicted_max", predicted[:, 0], dtype=pl.Float64),
        pl.Series("predicted_mean", predicted[:, 1], dtype=pl.Float64),
        pl.Series("predicted_max_value", in_units[:, 0], dtype=pl.Float64),
        pl.Series("predicted_mean_value", in_units[:, 1], dtype=pl.Float64),
        pl.Series("error_max", errors[:, 0], dtype=pl.Float64),
        pl.Series("error_mean", errors[:, 1], dtype=pl.Float64),
        pl.Series("label", labels, dtype=pl.Int64),
    ).with_columns((pl.col("label") == ANOMALY).alias("is_anomaly")).sort("router", "time")
    return table, skipped


def router_figure(rows: pl.DataFrame, router: str):
    """Series, prediction and anomalies of one router over the partition."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6))
    time = rows["time"].to_numpy()
    ax.plot(time, rows["max_metric_value"], label="max", lw=1.2)
    ax.plot(time, rows["predicted_max_value"], label="predicted max", lw=1, ls="--")
    ax.plot(time, rows["mean_metric_value"], label="mean", lw=1.2)
    ax.plot(time, rows["predicted_mean_value"], label="predicted mean", lw=1, ls="--")
    flagged = rows.filter(pl.col("is_anomaly"))
    ax.scatter(flagged["time"].to_numpy(), flagged["max_metric_value"], color="red", zorder=3, label="anomaly")
    ax.set_title(router, fontsize=9)
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.autofmt_xdate()
    return fig
