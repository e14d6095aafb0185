"""Per-group features of the nearest-filled RTT channel, vectorised over all groups of a partition.

The seed's selected features (quantiles 0.05 and 0.125, mean, 5 % truncated mean,
autocorrelation at lags 2, 3, 5) plus two it lacked:

- ``std``: the regimes differ in jitter as much as in level; the seven seed features see
  spread only through the gap between two low quantiles and the mean.
- ``missing_share``: the nearest fill hides lost packets, and loss is what sets a lossy
  slot apart; 1 - n_observed / 1500 puts it back.

Autocorrelation follows the seed's (tsfresh) definition:
``sum((x_t - mean)(x_{t+lag} - mean)) / ((n - lag) * var)``; a constant group has no
defined autocorrelation and gets NaN, which the finite-features check rejects.
"""

from __future__ import annotations

import numpy as np
import polars as pl

GROUP_POINTS = 1500
QUANTILES = {"q05": 0.05, "q125": 0.125}
TRIM_SHARE = 0.05
AUTOCORR_LAGS = (2, 3, 5)

SEED_FEATURES = ("q05", "q125", "mean", "trimmed_mean_5", "autocorr_2", "autocorr_3", "autocorr_5")
EXTRA_FEATURES = ("std", "missing_share")
FEATURES = SEED_FEATURES + EXTRA_FEATURES


def series_matrix(lists: pl.Series, points: int = GROUP_POINTS) -> np.ndarray:
    """A list (or fixed-size array) column of equal-length arrays as a float64 (groups, points) matrix."""
    if lists.len() == 0:
        return np.empty((0, points))
    arrays = lists if isinstance(lists.dtype, pl.Array) else lists.list.to_array(points)
    return np.asarray(arrays.to_numpy(), dtype=np.float64)


def group_features(nearest: np.ndarray, n_observed: np.ndarray) -> dict[str, np.ndarray]:
    """Features of each row of ``nearest`` (groups x points); one array per name in FEATURES."""
    if nearest.ndim != 2:
        raise ValueError(f"expected a (groups, points) matrix, got shape {nearest.shape}")
    n_points = nearest.shape[1]
    ordered = np.sort(nearest, axis=1)
    out = {name: np.quantile(ordered, q, axis=1) for name, q in QUANTILES.items()}
    mean = nearest.mean(axis=1)
    out["mean"] = mean
    cut = int(TRIM_SHARE * n_points)  # scipy.stats.trim_mean's rule: cut this many from each end
    out["trimmed_mean_5"] = ordered[:, cut : n_points - cut].mean(axis=1)
    centred = nearest - mean[:, None]
    variance = (centred**2).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for lag in AUTOCORR_LAGS:
            covariance = (centred[:, :-lag] * centred[:, lag:]).sum(axis=1)
            out[f"autocorr_{lag}"] = np.where(variance > 0, covariance / ((n_points - lag) * variance), np.nan)
    out["std"] = np.sqrt(variance)
    out["missing_share"] = 1.0 - np.asarray(n_observed, dtype=np.float64) / n_points
    return {name: out[name] for name in FEATURES}


def feature_frame(groups: pl.DataFrame) -> pl.DataFrame:
    """lens_clean_groups rows (day, region, group_id, group_start, n_observed, rtt_nearest) -> feature rows."""
    features = group_features(series_matrix(groups["rtt_nearest"]), groups["n_observed"].to_numpy())
    return groups.select("day", "region", "group_id", "group_start").with_columns(
        pl.Series(name, values, dtype=pl.Float64) for name, values in features.items()
    )


def feature_matrix(frame: pl.DataFrame, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The named feature columns as a matrix; refuses NaN or infinite values, naming the groups."""
    unknown = [n for n in names if n not in frame.columns]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; lens_group_features has {list(FEATURES)}")
    matrix = frame.select(names).to_numpy().astype(np.float64)
    bad_rows = ~np.isfinite(matrix).all(axis=1)
    if bad_rows.any():
        bad = frame.filter(pl.Series(bad_rows))
        examples = ", ".join(
            f"{row['day']}|{row['region']} group {row['group_id']}"
            for row in bad.select("day", "region", "group_id").head(5).iter_rows(named=True)
        )
        bad_columns = [n for n, ok in zip(names, np.isfinite(matrix[bad_rows]).all(axis=0)) if not ok]
        raise ValueError(
            f"{int(bad_rows.sum())} group(s) have NaN or infinite features {bad_columns} (e.g. {examples}); "
            "a constant RTT series has no autocorrelation. Fix or drop those groups and re-materialise "
            "lens_group_features (its finite-features check names them too)."
        )
    return matrix
