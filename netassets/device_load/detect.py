"""Anomalies from forecast errors: Embed-LSTM predictions, |prediction - actual|, then a labelling rule.

Two rules (``method``):

- ``"likelihood"`` (default): each router's error (sum of |error| over max and mean, in
  robust-scaled units) goes through Numenta's anomaly likelihood (``likelihood.py``): the
  short mean of recent errors against the running distribution of that router's earlier
  errors. The history is the router's held-out validation errors saved with the weights
  (those before the first scored point), then its errors in the context rows before the
  scored period, then the scored points themselves, in time order: every point is judged
  only against errors before it. Points with fewer than ``min_history`` earlier errors are
  not flagged; ``notes`` says how many, per router.
- ``"seed_dbscan"``: the seed's DBSCAN labelling with the seed's parameters (eps 1,
  min_samples 150): label -1 when fewer than ``min_samples`` error vectors lie within ``eps``.
  By default each router's points are clustered together with its validation errors
  (``reference="validation"``; one day of hourly points is too few for a density);
  ``"partition"`` clusters the scored points alone, as the seed did on its whole test set.
  ``eps_quantile`` replaces the fixed ``eps`` per router by a quantile of the k-distance
  (k = ``min_samples``) among its validation errors. A router with fewer than ``min_samples``
  validation errors cannot have a k-distance: it falls back to the fixed ``eps`` and
  ``notes`` says so (the run goes on). The seed's fallback ``fallback_mean_error`` (it used
  4.0): when DBSCAN finds no anomaly but the mean error exceeds it, every point is an anomaly.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from netassets.core.training import load_weights
from netassets.device_load.features import Scalers, Windows, build_windows
from netassets.device_load.likelihood import LikelihoodConfig, anomaly_likelihood, flags
from netassets.device_load.model import EmbedLSTM, ModelConfig, predict

ANOMALY = -1
METHODS = ("likelihood", "seed_dbscan")


@dataclass(frozen=True)
class SeedDbscan:
    """The seed's DBSCAN labelling and its parameters (eps=1, min_samples=150)."""

    eps: float = 1.0
    min_samples: int = 150
    reference: str = "validation"
    fallback_mean_error: float | None = None
    eps_quantile: float | None = None

    def __post_init__(self):
        if self.reference not in ("validation", "partition"):
            raise ValueError(f"reference must be 'validation' or 'partition', got {self.reference!r}")
        if self.eps_quantile is not None and self.reference != "validation":
            raise ValueError("eps_quantile needs reference='validation' (held-out errors to measure)")


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


def router_eps(reference: np.ndarray, config: SeedDbscan) -> tuple[float, str | None]:
    """DBSCAN radius for one router and, when it fell back to the fixed eps, why."""
    if config.eps_quantile is None:
        return config.eps, None
    if len(reference) < config.min_samples:
        return config.eps, (f"{len(reference)} validation errors are too few for a k-distance with "
                            f"min_samples={config.min_samples}: fixed eps {config.eps} used")
    return kdistance_eps(reference, config.min_samples, config.eps_quantile), None


@dataclass
class Detector:
    model: EmbedLSTM
    scalers: Scalers
    val_errors: np.ndarray  # (n, 2) |prediction - actual| on validation windows
    val_router_id: np.ndarray
    val_target_time: np.ndarray  # datetime64[us]

    @classmethod
    def load(cls, path: Path) -> "Detector":
        """The detector in a ``model.safetensors`` written by ``netassets.device_load.train``."""
        if not path.is_file():
            raise FileNotFoundError(f"no trained model at {path}: materialise device_load_model first")
        tensors, metadata = load_weights(path)
        if "val_target_time" not in tensors or "model_config" not in metadata:
            raise ValueError(f"{path}: not an anomaly-likelihood detector's weights: re-materialise device_load_model")
        model = EmbedLSTM(ModelConfig(**json.loads(metadata["model_config"])))
        model.load_state_dict({name.removeprefix("model."): t for name, t in tensors.items() if name.startswith("model.")})
        return cls(model, Scalers.from_dict(json.loads(metadata["scalers"])), tensors["val_errors"].numpy(),
                   tensors["val_router_id"].numpy(), tensors["val_target_time"].numpy().astype("datetime64[us]"))


@dataclass
class Detection:
    table: pl.DataFrame  # one row per scored point
    skipped: dict[str, str]  # router -> why it has no scored point
    notes: dict[str, str]  # router -> fallback or unscored points, for metadata


def _likelihood_labels(detector: Detector, router_id: int, windows: Windows, errors: np.ndarray,
                       config: LikelihoodConfig) -> tuple[np.ndarray, np.ndarray]:
    """(likelihood, labels) of one router's windows, each judged against the errors before it."""
    mine = detector.val_router_id == router_id
    earlier = mine & (detector.val_target_time < windows.target_time.min())
    history = detector.val_errors[earlier][np.argsort(detector.val_target_time[earlier], kind="stable")]
    sequence = np.concatenate([history.sum(axis=1), errors.sum(axis=1)])
    likelihood = anomaly_likelihood(sequence, config)
    flagged = flags(likelihood, config)[len(history):]
    return likelihood[len(history):], np.where(flagged, ANOMALY, 0).astype(np.int64)


def detect(frame: pl.DataFrame, detector: Detector, period: tuple | None = None, method: str = "likelihood",
           likelihood: LikelihoodConfig = LikelihoodConfig(), dbscan: SeedDbscan = SeedDbscan()) -> Detection:
    """Score the rows of ``frame`` whose time falls in ``period`` = [start, end) (None = all).

    ``frame`` holds feature rows sorted by router and time; rows before ``period`` are
    context (window inputs and, for the likelihood, the running error history). Returns the
    seed's output columns (time, metric values, actual, predictions, label) per router plus
    errors and the likelihood.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    all_windows, skipped = build_windows(frame, detector.scalers)
    in_period = np.ones(len(all_windows), dtype=bool)
    if period is not None:
        start, end = (np.datetime64(p, "us") for p in period)
        in_period = (all_windows.target_time >= start) & (all_windows.target_time < end)
    predicted_all = predict(detector.model, all_windows.x, all_windows.router_id)
    errors_all = np.abs(predicted_all - all_windows.actual)
    labels_all = np.zeros(len(all_windows), dtype=np.int64)
    likelihood_all = np.full(len(all_windows), np.nan)
    notes: dict[str, str] = {}
    for router_id in np.unique(all_windows.router_id[in_period]):
        router = detector.scalers.routers[router_id]
        mine = all_windows.router_id == router_id
        if method == "likelihood":
            likelihood_all[mine], labels_all[mine] = _likelihood_labels(
                detector, router_id, all_windows.take(mine), errors_all[mine], likelihood)
            unscored = int(np.isnan(likelihood_all[mine & in_period]).sum())
            if unscored:
                notes[router] = (f"{unscored} of {int((mine & in_period).sum())} points not scored: fewer than "
                                 f"{likelihood.min_history} earlier errors (validation + context)")
            continue
        mine &= in_period
        ref = detector.val_errors[detector.val_router_id == router_id] if dbscan.reference == "validation" else None
        radius, fallback = router_eps(ref, dbscan) if ref is not None else (dbscan.eps, None)
        if fallback:
            notes[router] = fallback
        labels_all[mine] = dbscan_labels(errors_all[mine], radius, dbscan.min_samples, ref, dbscan.fallback_mean_error)
    windows = all_windows.take(in_period)
    predicted, errors, labels = predicted_all[in_period], errors_all[in_period], labels_all[in_period]
    in_units = np.zeros_like(predicted)
    for router_id in np.unique(windows.router_id):
        mine = windows.router_id == router_id
        in_units[mine] = detector.scalers.per_router[detector.scalers.routers[router_id]].unscale_targets(predicted[mine])
    rows = frame[windows.row.tolist()] if len(windows) else frame.clear()
    scored_rows = frame if period is None else frame.filter(
        (pl.col("timeslot") >= pl.lit(period[0])) & (pl.col("timeslot") < pl.lit(period[1])))
    seen = set(scored_rows["router"].to_list())
    skipped = {r: why for r, why in skipped.items() if r in seen}
    for router in sorted(seen - set(rows["router"].to_list()) - set(skipped)):
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
        pl.Series("likelihood", likelihood_all[in_period], dtype=pl.Float64, nan_to_null=True),
        pl.Series("label", labels, dtype=pl.Int64),
    ).with_columns((pl.col("label") == ANOMALY).alias("is_anomaly")).sort("router", "time")
    return Detection(table, skipped, notes)


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


# ---------------------------------------------------------------------------------------------
# One partition, as device_load_anomalies scores it


def context_days(detector: Detector, method: str, likelihood: LikelihoodConfig) -> int:
    """Days of feature rows needed before the scored day: one window of inputs, plus the
    running error history of the likelihood."""
    steps = detector.scalers.window + (likelihood.long_window if method == "likelihood" else 0)
    return -(-steps * detector.scalers.step_seconds // 86400)  # ceil


def detect_day(history: pl.DataFrame, detector: Detector, day: dt.date, method: str,
               likelihood: LikelihoodConfig, dbscan: SeedDbscan) -> Detection:
    """Score the points of ``day``; the earlier rows of ``history`` are context."""
    start = dt.datetime.combine(day, dt.time())
    return detect(history, detector, (start, start + dt.timedelta(days=1)), method, likelihood, dbscan)


def per_router(table: pl.DataFrame) -> pl.DataFrame:
    """Points, anomalies and mean max-error per router."""
    return (table.group_by("router").agg(pl.len().alias("points"), pl.col("is_anomaly").sum().alias("anomalies"),
                                         pl.col("error_max").mean().alias("mean_error_max")).sort("router"))


def router_plots(table: pl.DataFrame, detector: Detector, plot_dir: Path, max_plots: int) -> dict:
    """Every router's figure written under ``plot_dir``; the first ``max_plots`` as inline metadata."""
    from netassets.core.plots import figure_metadata

    plots = {}
    for i, ((router,), rows) in enumerate(table.group_by("router", maintain_order=True)):
        figure = figure_metadata(f"plot {router}", router_figure(rows, router),
                                 save_to=plot_dir / f"router_{detector.scalers.router_id(router)}.png")
        if i < max_plots:
            plots.update(figure)
    return plots
