"""The perfSONAR detector judged per hour against simple baselines, where labels exist.

Production clusters carry no labels: there the scoring asset records the detector's flags next
to the baselines' and says that nothing is evaluated. The simulator knows its anomalous hours
and writes them to ``landing/perfsonar/<index>.truth.json``; for a source-day those files cover,
every scored hour is a test row and the detector and each baseline get precision, recall and F1
per hour on exactly those hours, in the same run (``netassets.core.evaluation.Evaluation``).

Why every scored hour is a fair test row: an hour is scored only from its own minutes and the
24 h before it (nothing later): by the rank-scan tail probability (the default) or by the seed's
classifier trained on 70 % of those minutes and judged on the other 30 % (``method="seed"``);
the cuts (2 for the rank scan, a family-wise p of 0.01; 0.05 for the seed's) and the baselines'
thresholds are fixed before any label is read, and no label is used to fit anything.

No promotion path exists: the detector keeps no model from one hour to the next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from netassets.core.evaluation import Evaluation
from netassets.perfsonar.model import DetectorSettings, HourScore, Window, windows

DETECTOR = "detector (rank-scan tail probability > cut)"
SEED_DETECTOR = "seed classifier (scaled accuracy > cut)"
ZSCORE = "z-score of hourly loss vs previous 24 h"
STEP = "loss step vs previous 24 h mean"
METRIC = "f1"
SPLIT_RULE = ("every scored hour of the source-day: each judged only from its own minutes and the 24 h before"
              " it, the cut and the baselines' thresholds fixed a priori, labels from the generator's truth file")
NO_PROMOTION = "no promotion path: each hour is scored against its own 24 h reference and no model is kept"


def detector_name(settings: DetectorSettings) -> str:
    """The name the detector's row carries: the rank scan's, or the seed classifier's."""
    return DETECTOR if settings.method == "rank_scan" else SEED_DETECTOR


def step_baseline(window: Window) -> float:
    """The largest rise of one destination's mean loss in the hour over its mean in the reference."""
    return float((window.subject.mean(axis=0) - window.reference.mean(axis=0)).max())


def scorer_flags(matrix: pd.DataFrame, scores: list[HourScore], settings: DetectorSettings
                 ) -> dict[str, dict[pd.Timestamp, bool]]:
    """{scorer: {hour: flagged}} for the detector and every baseline, on the scored hours only."""
    scored = [s for s in scores if s.status == "scored"]
    steps = {w.hour: step_baseline(w) for w in windows(matrix, [s.hour for s in scored], settings.reference_hours)}
    return {
        detector_name(settings): {s.hour: s.flagged for s in scored},
        ZSCORE: {s.hour: s.baseline_flagged for s in scored},
        STEP: {s.hour: steps[s.hour] > settings.step_threshold for s in scored},
    }


def flag_metrics(flags: dict[pd.Timestamp, bool], anomalous: set[pd.Timestamp]) -> dict[str, float]:
    """Per-hour precision, recall and F1. A scorer that neither flags nor misses an hour (a quiet
    day, nothing flagged) did everything right: its F1 is 1.0 (sklearn's zero_division=1.0)."""
    tp = sum(f and h in anomalous for h, f in flags.items())
    fp = sum(f and h not in anomalous for h, f in flags.items())
    fn = sum(not f and h in anomalous for h, f in flags.items())
    return {"precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
            "tp": tp, "fp": fp, "fn": fn, "hours": len(flags)}


def evaluate(flags: dict[str, dict[pd.Timestamp, bool]], anomalous: set[pd.Timestamp], split_rule: str = SPLIT_RULE,
             notes: Iterable[str] = (), model: str = DETECTOR) -> Evaluation:
    """The detector (``model``) against every other scorer on the same hours; the verdict reads F1."""
    hours = [set(f) for f in flags.values()]
    if any(h != hours[0] for h in hours):
        raise ValueError("the detector and its baselines must be scored on exactly the same hours")
    scores = {name: flag_metrics(f, anomalous) for name, f in flags.items()}
    extra = list(notes)
    f1s = {s["f1"] for s in scores.values()}
    if len(f1s) == 1:
        extra.append(f"all scorers tie at F1 {f1s.pop():.4g}: these hours do not tell the detector from its"
                     " baselines, so it is not shown to be better")
    return Evaluation(model=model, metric=METRIC, higher_is_better=True, scores=scores, rows=len(hours[0]),
                      split_rule=split_rule, notes=(*extra, NO_PROMOTION))


@dataclass(frozen=True)
class Truth:
    """One truth file: the hours it covers for one source, and which of them are anomalous."""

    source: str
    start: pd.Timestamp
    end: pd.Timestamp
    anomalous: frozenset[pd.Timestamp]
    path: Path

    def covers(self, hour: pd.Timestamp) -> bool:
        return self.start <= hour < self.end


def read_truth(path: Path) -> Truth:
    try:
        data = json.loads(path.read_text())
        return Truth(source=data["source"], start=pd.Timestamp(data["start"]), end=pd.Timestamp(data["end"]),
                      anomalous=frozenset(pd.Timestamp(a["hour"]) for a in data["anomalous_hours"]), path=path)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"perfSONAR truth file {path}: expected {{source, start, end, anomalous_hours: [{{hour}}]}}"
                         f" ({type(exc).__name__}: {exc})") from exc


@dataclass
class HourLabels:
    """What the truth files say about one source's hours."""

    labelled: set[pd.Timestamp]
    anomalous: set[pd.Timestamp]  # a subset of ``labelled``
    files: list[Path]  # the truth files the labels come from
    unreadable: list[str]  # one message per truth file that could not be read (skipped)


def labels_for(folder: Path, source: str, hours: list[pd.Timestamp]) -> HourLabels:
    """The labels the truth files in ``folder`` give ``source``'s ``hours``. A file that cannot be
    read is skipped and reported, not fatal: scoring needs no labels, only its evaluation does."""
    labels = HourLabels(set(), set(), [], [])
    for path in sorted(folder.glob("*.truth.json")) if folder.is_dir() else []:
        try:
            truth = read_truth(path)
        except (OSError, ValueError) as exc:
            labels.unreadable.append(str(exc))
            continue
        covered = {h for h in hours if truth.source == source and truth.covers(h)}
        if covered:
            labels.labelled.update(covered)
            labels.anomalous.update(covered & truth.anomalous)
            labels.files.append(path)
    return labels


def hour_table(flags: dict[str, dict[pd.Timestamp, bool]], anomalous: set[pd.Timestamp] | None) -> list[dict]:
    """One row per scored hour: each scorer's flag side by side (and the label, where known)."""
    hours = sorted(next(iter(flags.values())))
    return [{"hour": h.strftime("%H:00"), **({"anomalous (truth)": h in anomalous} if anomalous is not None else {}),
             **{name: bool(f[h]) for name, f in flags.items()}} for h in hours]
