"""Scoring binary detections against labelled anomaly windows (NAB's ``combined_windows.json``).

Two scores:

- ``window_scores``: event-level precision, recall and F1. A detected *event* is a run of
  consecutive flagged points; it is a true positive if it overlaps a labelled window.
  recall = labelled windows overlapped by any flagged point / labelled windows,
  precision = events overlapping a window / events.
- ``nab_score``: the Numenta Anomaly Benchmark score, following NAB's ``sweeper.py``
  (v1.1): points in the first 15 % of a file (at most 750) are probationary and not scored;
  inside a window a detection earns ``tpWeight * scaledSigmoid(position) / scaledSigmoid(-1)``
  and only the best (earliest) detection of a window counts; an undetected window costs
  ``fnWeight``; a detection outside windows costs ``fpWeight * scaledSigmoid(distance past the
  previous window, relative to its width)`` (-fpWeight when no window precedes it). The
  normalised score is ``100 * (raw - null) / (perfect - null)`` over all files, with the null
  detector flagging nothing and ``perfect = tpWeight * number of windows`` (NAB's runner).
  A binary detector is NAB's sweep at the one threshold that keeps exactly its detections.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class CostMatrix:
    tp: float
    fp: float
    fn: float


STANDARD = CostMatrix(tp=1.0, fp=0.11, fn=1.0)  # NAB's "standard" profile


def load_windows_file(path: Path) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    """combined_windows.json -> {relative csv path: [(start, end)]}."""
    raw = json.loads(path.read_text())
    return {name: [(np.datetime64(a, "us"), np.datetime64(b, "us")) for a, b in spans] for name, spans in raw.items()}


def scaled_sigmoid(relative_position: float) -> float:
    if relative_position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


def probationary_length(n: int, percent: float = 0.15) -> float:
    return min(math.floor(percent * n), percent * 5000)


def _window_indices(timestamps: np.ndarray, windows) -> list[tuple[int, int]]:
    index = {t: i for i, t in enumerate(timestamps.tolist())}
    spans = []
    for start, end in windows:
        if start.tolist() not in index or end.tolist() not in index:
            raise ValueError(f"window {start} .. {end} does not start and end on timestamps of the series")
        spans.append((index[start.tolist()], index[end.tolist()]))
    return sorted(spans)


def nab_raw_score(timestamps: np.ndarray, flagged: np.ndarray, windows, cost: CostMatrix = STANDARD,
                  probation_percent: float = 0.15) -> dict:
    """NAB's raw score of one file for a binary detector; also the null score and window count."""
    spans = _window_indices(np.asarray(timestamps, dtype="datetime64[us]"), windows)
    probation = probationary_length(len(timestamps), probation_percent)
    max_tp = scaled_sigmoid(-1.0)
    window_of = np.full(len(timestamps), -1)
    for k, (left, right) in enumerate(spans):
        window_of[left:right + 1] = k
    scored_windows = {int(window_of[i]) for i in range(len(timestamps)) if i >= probation and window_of[i] >= 0}
    parts = {k: -cost.fn for k in scored_windows}
    fp_total = 0.0
    prev_right, prev_width = None, None
    for i in range(len(timestamps)):
        k = window_of[i]
        if k >= 0:
            left, right = spans[k]
            width = right - left + 1
            score = scaled_sigmoid(-(right - i + 1) / width) * cost.tp / max_tp
        else:
            past = 3.0 if prev_right is None else abs(prev_right - i) / float(prev_width - 1)
            score = scaled_sigmoid(past) * cost.fp
        if flagged[i] and i >= probation:
            if k >= 0:
                parts[k] = max(parts[k], score)
            else:
                fp_total += score
        if k >= 0 and i == spans[k][1]:
            prev_right, prev_width = i, spans[k][1] - spans[k][0] + 1
    return {"raw": sum(parts.values()) + fp_total, "null": -cost.fn * len(scored_windows), "windows": len(spans)}


def nab_score(per_file: list[dict], cost: CostMatrix = STANDARD) -> float:
    """NAB's normalised score (0 = flags nothing, 100 = every window at its first point, no FP)."""
    raw = sum(f["raw"] for f in per_file)
    null = sum(f["null"] for f in per_file)
    perfect = cost.tp * sum(f["windows"] for f in per_file)
    return 100.0 * (raw - null) / (perfect - null)


def events(flagged: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive flagged points as (first, last) indices."""
    idx = np.flatnonzero(flagged)
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return list(zip(starts.tolist(), ends.tolist()))


def window_counts(timestamps: np.ndarray, flagged: np.ndarray, windows) -> dict:
    spans = _window_indices(np.asarray(timestamps, dtype="datetime64[us]"), windows)
    found = events(np.asarray(flagged, dtype=bool))
    overlaps = lambda a, b: a[0] <= b[1] and b[0] <= a[1]  # noqa: E731
    return {
        "windows": len(spans),
        "windows_detected": sum(any(overlaps(w, e) for e in found) for w in spans),
        "events": len(found),
        "events_true": sum(any(overlaps(e, w) for w in spans) for e in found),
    }


def window_scores(counts: list[dict]) -> dict:
    """Precision, recall, F1 from summed ``window_counts`` of several files."""
    total = {k: sum(c[k] for c in counts) for k in ("windows", "windows_detected", "events", "events_true")}
    precision = total["events_true"] / total["events"] if total["events"] else 0.0
    recall = total["windows_detected"] / total["windows"] if total["windows"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {**total, "precision": precision, "recall": recall, "f1": f1}
