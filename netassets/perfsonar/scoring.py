"""Scoring a day's hours with the chosen method: the rank scan (numpy, ``model``) or the seed's
per-hour classifiers (torch, ``batched_net``, imported only when that method runs). Kept apart
from both so that neither imports the other."""

from __future__ import annotations

import pandas as pd

from netassets.perfsonar.model import DetectorSettings, HourScore, Window, rank_scan_scores, windows


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
        destinations = list(matrix.columns)
        if settings.method == "rank_scan":
            scored = rank_scan_scores(ready, destinations, settings)
        else:
            from netassets.perfsonar.batched_net import train_and_score

            scored = train_and_score(ready, destinations, settings)
        for w, score in zip(ready, scored):
            results[w.hour] = score
    return [results[h] for h in hours]
