"""The seed's detector, vectorised: every hour of a day trained at once as one batched model.

Seed method (004): build the minute x destination loss matrix; for each hour, label the previous
24 h 0 (reference) and the hour 1 (subject), split each 70/30, train a dense net
(n -> 2n relu -> n relu -> 1 sigmoid, binary cross-entropy), and turn held-out accuracy into
scaled accuracy = (acc - chance) / (1 - chance), chance = ref / (ref + sub). An hour above the
cut (0.05) is anomalous: the net could tell that hour from the day before.

What is kept: the windows, labels, split, dense architecture, loss, held-out scaled accuracy and cut.
What changes, and why:
- All hours are one model with a leading "hour" batch dimension (batched matmuls). The loss is
  the sum of the per-hour mean losses and Adam's update is per parameter, so every hour's
  weights follow exactly the gradient of its own loss: they are independent classifiers trained
  side by side, not one shared model.
- Full-batch Adam for a fixed number of steps instead of RMSprop on batches of 10 for 100
  epochs (~11,000 tiny steps an hour, the seed's 10-30 s an hour).
- Hidden layers of at least 16 and 8 units and a leaky ReLU (see ``batched_net``): the seed's
  widths scale with the destinations, and for one to three of them its tiny ReLU net missed even
  a 30-point loss shift for most initialisations.
- Inputs are centred and scaled by the reference window (per destination, scale floored at
  ``min_scale``). An affine map is absorbed by the first layer, so the family of classifiers
  is unchanged; it only makes raw loss fractions (often 0.001) trainable in few steps.

The torch half (the batched net and its training) is in ``batched_net``, imported when hours
are scored: the code location imports this module for the settings and score types.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class DetectorSettings:
    reference_hours: int = 24
    test_share: float = 0.3
    cut: float = 0.05
    steps: int = 60
    learning_rate: float = 0.03
    min_scale: float = 0.01  # one percentage point of loss: below that, a change is not a change
    min_reference_rows: int = 720  # half the reference window's minutes
    min_subject_rows: int = 30
    top_destinations: int = 3
    baseline_z: float = 3.0
    # The baseline's own floor (half a point of loss): the best of 1e-4..1e-2 on the simulator,
    # so the baseline is, if anything, favoured in the comparison.
    baseline_min_scale: float = 0.005
    # The loss-step baseline flags an hour whose mean loss on some destination rose by more than
    # this over its reference mean: one point of loss, the same a-priori floor as ``min_scale``.
    step_threshold: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class Window:
    hour: pd.Timestamp
    reference: np.ndarray  # (rows, destinations)
    subject: np.ndarray


@dataclass(frozen=True)
class HourScore:
    hour: pd.Timestamp
    status: str  # scored | insufficient_reference | insufficient_subject
    reference_rows: int
    subject_rows: int
    accuracy: float | None = None
    chance: float | None = None
    score: float | None = None
    flagged: bool = False
    top_destinations: tuple[str, ...] = ()
    baseline_max_z: float | None = None
    baseline_flagged: bool = False


def loss_matrix(long: pd.DataFrame) -> pd.DataFrame:
    """The seed's matrix from (minute, destination, packet_loss) rows: one row per minute any
    destination reported, one column per destination, missing cells 0."""
    if long.empty:
        return pd.DataFrame(dtype=float)
    matrix = long.pivot_table(index="minute", columns="destination", values="packet_loss", aggfunc="last")
    return matrix.sort_index().sort_index(axis=1).fillna(0.0).astype(float)


def windows(matrix: pd.DataFrame, hours: list[pd.Timestamp], reference_hours: int = 24) -> list[Window]:
    index = matrix.index
    values = matrix.to_numpy(dtype=np.float64)
    out = []
    for hour in hours:
        ref_lo, sub_lo, sub_hi = np.searchsorted(index, [hour - reference_hours * HOUR, hour, hour + HOUR])
        out.append(Window(hour, values[ref_lo:sub_lo], values[sub_lo:sub_hi]))
    return out


def split(rows: int, test_share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train/test row indices; the test part is ceil(share * rows), as sklearn's train_test_split."""
    order = rng.permutation(rows)
    n_test = math.ceil(test_share * rows)
    return order[n_test:], order[:n_test]


def scaled_accuracy(accuracy: float, reference_rows: int, subject_rows: int) -> tuple[float, float]:
    chance = reference_rows / (reference_rows + subject_rows)
    return (accuracy - chance) / (1 - chance), chance


def zscore_baseline(window: Window, min_scale: float) -> float:
    """Per-destination z-score of the hour's mean loss against the reference's hourly means; the max."""
    ref, sub = window.reference, window.subject
    hours = max(1, round(len(ref) / 60))
    hourly = np.array([chunk.mean(axis=0) for chunk in np.array_split(ref, hours)])
    scale = np.maximum(hourly.std(axis=0), min_scale)
    return float(((sub.mean(axis=0) - hourly.mean(axis=0)) / scale).max())


def score_hours(matrix: pd.DataFrame, hours: list[pd.Timestamp], settings: DetectorSettings = DetectorSettings()
                ) -> list[HourScore]:
    """Score each hour (subject = [hour, hour + 1 h), reference = the ``reference_hours`` before it)."""
    results: dict[pd.Timestamp, HourScore] = {}
    ready: list[Window] = []
    for w in windows(matrix, hours, settings.reference_hours):
        if len(w.reference) < settings.min_reference_rows:
            results[w.hour] = HourScore(w.hour, "insufficient_reference", len(w.reference), len(w.subject))
        elif len(w.subject) < settings.min_subject_rows:
            results[w.hour] = HourScore(w.hour, "insufficient_subject", len(w.reference), len(w.subject))
        else:
            ready.append(w)
    if ready:
        from netassets.perfsonar.batched_net import train_and_score

        destinations = list(matrix.columns)
        for w, score in zip(ready, train_and_score(ready, destinations, settings)):
            results[w.hour] = score
    return [results[h] for h in hours]


def day_hours(day: dt.date) -> list[pd.Timestamp]:
    start = pd.Timestamp(day)
    return [start + h * HOUR for h in range(24)]
