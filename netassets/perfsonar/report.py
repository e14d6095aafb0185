"""Scoring a source-day and what its page shows: the timed scoring, the score table and the seed's figure."""

from __future__ import annotations

import os
import time

import pandas as pd

from netassets.core.partitions import DayPartition
from netassets.perfsonar.model import DetectorSettings, HourScore, day_hours
from netassets.perfsonar.scoring import score_hours

PLOTTED_DESTINATIONS = 20  # the seed plots a subset of the links too


def score_day(matrix: pd.DataFrame, day, settings: DetectorSettings) -> tuple[list[HourScore], float]:
    """Every hour of ``day`` scored against its previous 24 h; returns the scores and the seconds taken."""
    import torch  # here, not at module level: the code location imports the asset modules

    # The batched model is small; more threads than two only contend. Restored afterwards, since
    # in-process execution (materialize, tests) shares the setting with every later step.
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        started = time.perf_counter()
        scores = score_hours(matrix, day_hours(day), settings)
        return scores, time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)


def scores_table(scores: list[HourScore]) -> list[dict]:
    return [{
        "hour": s.hour.strftime("%H:00"), "status": s.status, "ref": s.reference_rows, "sub": s.subject_rows,
        "held-out acc": s.accuracy, "chance": s.chance, "score": s.score, "flagged": s.flagged,
        "baseline max z": s.baseline_max_z, "baseline flagged": s.baseline_flagged,
        "top destinations": ", ".join(s.top_destinations),
    } for s in scores]


def score_summary(scores: list[HourScore]) -> dict:
    """Counts of the day's scored hours and how the detector and the z-score baseline agree."""
    scored = [s for s in scores if s.status == "scored"]
    accuracies = [s.accuracy for s in scored if s.accuracy is not None]
    return {
        "hours_scored": len(scored),
        "hours_not_scored": {s.hour.strftime("%H:00"): s.status for s in scores if s.status != "scored"},
        "alarms": sum(s.flagged for s in scored),
        "baseline_alarms": sum(s.baseline_flagged for s in scored),
        "detector_baseline_agreement": (sum(s.flagged == s.baseline_flagged for s in scored) / len(scored)
                                        if scored else float("nan")),
        "mean_heldout_accuracy": sum(accuracies) / len(accuracies) if accuracies else float("nan"),
    }


def shaded_chart(matrix: pd.DataFrame, scores: list[HourScore], partition: DayPartition, cut: float):
    """The seed's figure: the day's loss series, then the score with detected hours shaded."""
    from netassets.core.plots import plt

    day = matrix[(matrix.index >= pd.Timestamp(partition.day)) & (matrix.index < pd.Timestamp(partition.day) + pd.Timedelta(days=1))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 7), sharex=True)
    day.iloc[:, :PLOTTED_DESTINATIONS].plot(ax=top, legend=False, linewidth=0.7)
    top.set_ylabel("packet loss")
    top.set_title(f"{partition.other} on {partition.day}: {matrix.shape[1]} destinations")
    hours = [s.hour for s in scores]
    bottom.step(hours, [s.score if s.score is not None else float("nan") for s in scores], where="post", color="g",
                label="scaled accuracy" if scores and scores[0].accuracy is not None else "-log10 tail probability")
    for s in scores:
        if s.flagged:
            bottom.axvspan(s.hour, s.hour + pd.Timedelta(hours=1), color="b", alpha=0.3)
    bottom.axhline(cut, color="k", linestyle="--", linewidth=0.8, label=f"cut {cut}")
    bottom.set_ylabel("score")
    bottom.legend(loc="upper left")
    return fig
