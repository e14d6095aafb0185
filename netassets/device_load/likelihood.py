"""Forecast errors -> anomaly likelihood under a running error distribution (Numenta's rule).

Numenta's HTM detector does not threshold its raw prediction error: it asks how unusual the
*recent* error is compared with the errors it has been making. For every point t:

- ``short``: the mean of the last ``short_window`` errors, t included (a lone noisy error is
  diluted, a sustained change is not);
- the running distribution: mean and standard deviation of those short means over the
  ``long_window`` points *before* t (never t itself, never a later point);
- ``likelihood`` = Phi((short - mean) / std), the probability that a short mean drawn from the
  running distribution is below this one. Only large errors are unusual here (Numenta's
  version is two-sided; a forecaster being unusually right is not an anomaly).

A point is flagged when its likelihood exceeds ``threshold`` (Numenta's 1 - 1e-5, a priori,
not tuned on labels). After a flag, ``refractory`` points are not flagged again: one anomaly
is one alarm (NAB rewards the first detection of a window and charges every false one).
The first ``min_history`` points have too little history and are never flagged.

The standard deviation has a floor (``std_floor`` times the running mean of the short
means, plus a tiny absolute floor) so that a flat stretch with near-zero errors does not
turn the first ordinary wiggle into an alarm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LikelihoodConfig:
    short_window: int = 10  # Numenta's averaging window
    long_window: int = 500  # running error distribution: this many previous short means
    min_history: int = 100  # points of history needed before anything is flagged
    threshold: float = 1 - 1e-5  # Numenta's likelihood threshold
    refractory: int = 100  # points after a flag that are not flagged again
    std_floor: float = 0.05  # relative floor on the running std

    def __post_init__(self):
        if self.short_window < 1 or self.long_window < 2 or self.min_history < 2 or self.refractory < 0:
            raise ValueError(f"short_window >= 1, long_window >= 2, min_history >= 2, refractory >= 0 needed: {self}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")

    def to_dict(self) -> dict:
        return asdict(self)


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of values[max(0, t - window + 1) .. t] for every t."""
    sums = np.concatenate([[0.0], np.cumsum(values)])
    t = np.arange(len(values))
    lo = np.maximum(t - window + 1, 0)
    return (sums[t + 1] - sums[lo]) / (t + 1 - lo)


def anomaly_likelihood(errors: np.ndarray, config: LikelihoodConfig = LikelihoodConfig()) -> np.ndarray:
    """Likelihood in [0, 1] of each error being unusually large; NaN where history is too short.

    ``errors`` is one series in time order (non-negative, e.g. |prediction - actual|); a
    non-finite error is treated as missing: it counts as the running mean at that point.
    """
    errors = np.asarray(errors, dtype=np.float64)
    finite = np.isfinite(errors)
    # The mean of the finite errors before t, not of the whole series: a point's likelihood must
    # not depend on what comes after it (0 before any finite error).
    prior_sum = np.concatenate([[0.0], np.cumsum(np.where(finite, errors, 0.0))[:-1]])
    prior_count = np.concatenate([[0], np.cumsum(finite)[:-1]])
    running = np.divide(prior_sum, prior_count, out=np.zeros(len(errors)), where=prior_count > 0)
    filled = np.where(finite, errors, running)
    short = _trailing_mean(filled, config.short_window)
    # Running distribution of the short means strictly before t: windows [t - long, t).
    sums = np.concatenate([[0.0], np.cumsum(short)])
    squares = np.concatenate([[0.0], np.cumsum(short ** 2)])
    t = np.arange(len(short))
    lo = np.maximum(t - config.long_window, 0)
    count = t - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums[t] - sums[lo]) / count
        variance = np.maximum((squares[t] - squares[lo]) / count - mean ** 2, 0.0)
        std = np.maximum(np.sqrt(variance), config.std_floor * np.abs(mean) + 1e-9)
        z = (short - mean) / std
    likelihood = np.array([0.5 * math.erfc(-v / math.sqrt(2)) if np.isfinite(v) else np.nan for v in z])
    likelihood[t < config.min_history] = np.nan
    return likelihood


def suppress_repeats(alarms: np.ndarray, refractory: int) -> np.ndarray:
    """Keep an alarm only if no kept alarm lies in the ``refractory`` points before it."""
    kept = np.zeros(len(alarms), dtype=bool)
    quiet_until = -1
    for i in np.flatnonzero(alarms):
        if i > quiet_until:
            kept[i] = True
            quiet_until = i + refractory
    return kept


def flags(likelihood: np.ndarray, config: LikelihoodConfig = LikelihoodConfig()) -> np.ndarray:
    """Points whose likelihood exceeds the threshold, at most one per ``refractory`` points."""
    above = np.nan_to_num(np.asarray(likelihood, dtype=np.float64), nan=0.0) > config.threshold
    return suppress_repeats(above, config.refractory)
