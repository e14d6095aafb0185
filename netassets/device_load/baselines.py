"""Simple causal anomaly detectors on one series, the baselines the device-load detector must beat.

Each returns a score per point computed from that point and earlier points only.

- ``windowed_gaussian``: NAB's "windowed Gaussian" detector: the two-sided Gaussian tail
  probability of each value under the mean and standard deviation of a trailing window of
  earlier values (NAB: 6400 points, statistics refreshed every 100 points); the score is
  1 - tail probability, so it compares with the likelihood's threshold.
- ``rolling_zscore``: |x - mean| / std over the previous ``window`` values.
"""

from __future__ import annotations

import math

import numpy as np


def windowed_gaussian(values: np.ndarray, window: int = 6400, step: int = 100) -> np.ndarray:
    """1 - two-sided tail probability of each value under a trailing window's Gaussian (0 without history)."""
    values = np.asarray(values, dtype=np.float64)
    scores = np.zeros(len(values))
    for i in range(1, len(values)):
        # NAB grows the window point by point until it is full, then slides it in steps.
        end = i if i < window else window + (i - window) // step * step
        history = values[max(0, end - window):end]
        std = history.std()
        if std > 0:
            scores[i] = 1.0 - math.erfc(abs(values[i] - history.mean()) / std / math.sqrt(2))
    return scores


def rolling_zscore(values: np.ndarray, window: int, min_points: int) -> np.ndarray:
    """|x - mean| / std of the previous ``window`` values; 0 with fewer than ``min_points`` or a flat window."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(values)])
    squares = np.concatenate([[0.0], np.cumsum(values ** 2)])
    t = np.arange(len(values))
    lo = np.maximum(t - window, 0)
    count = t - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums[t] - sums[lo]) / count
        std = np.sqrt(np.maximum((squares[t] - squares[lo]) / count - mean ** 2, 0.0))
        z = np.abs(values - mean) / std
    return np.where((count >= min_points) & (std > 1e-12 * (1 + np.abs(mean))), z, 0.0)
