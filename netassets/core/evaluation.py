"""One evaluation protocol for every model asset.

The rules, the same for all five pipelines:

- **Splits by time or site, never random rows.** ``split_by_day`` holds out whole days (or any
  ordered partition values, e.g. capture sites in a fixed order); ``time_cutoffs`` / ``split_of``
  cut one chronological series 70/15/15 (or as asked) by timestamp. Neighbouring rows of a
  network series are correlated, so a random split would leak.
- **Validation chooses, test judges.** Early stopping, epochs, thresholds and any other
  selection read the validation split only; every "beats X" verdict is read from test.
- **Baselines on exactly the same test rows, in the same run.** An ``Evaluation`` holds the
  model's and every baseline's scores side by side, the number of test rows they share and the
  split rule, and says which baseline is the strongest.
- **One promotion rule.** A model reaches a production path only when it beats the strongest
  baseline on test (strictly; a tie loses, a non-finite score loses). ``promotion_refusal``
  returns the reason when it does not, and production assets raise it as a ``dg.Failure``, so
  the UI says why.

This module imports no Dagster at the top: torchrun workers build ``Evaluation`` objects too.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netassets.core.metadata import shown

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Splits


def _day_text(value) -> str:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def split_by_day(days: np.ndarray, val_fraction: float, test_fraction: float) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Chronological split by whole days (or any sortable partition value): the last test, the ones before validate.

    Returns ({split: row mask}, {split: the days in it}). Needs at least 3 distinct values.
    """
    unique = sorted({_day_text(d) for d in days})
    if len(unique) < 3:
        raise ValueError(f"need at least 3 days to split train/validation/test by day, found {len(unique)}: {unique}")
    n_test = max(1, round(test_fraction * len(unique)))
    n_val = max(1, round(val_fraction * len(unique)))
    if n_test + n_val >= len(unique):
        n_test, n_val = 1, 1
    names = {"train": unique[: -n_val - n_test], "val": unique[-n_val - n_test : -n_test], "test": unique[-n_test:]}
    as_text = np.array([_day_text(d) for d in days])
    return {split: np.isin(as_text, chosen) for split, chosen in names.items()}, names


def time_cutoffs(times: np.ndarray, train: float = 0.8, val: float = 0.1) -> tuple[np.datetime64, np.datetime64]:
    """Timestamps splitting the distinct times ``train`` / ``val`` / rest: rows before the first
    cut train, rows before the second validate, the rest test."""
    distinct = np.unique(times)
    if len(distinct) < 3:
        raise ValueError(f"need at least 3 distinct times to split train/validation/test, got {len(distinct)}")
    train_end, val_end = chronological_bounds(len(distinct), train, val)  # each part at least one time
    return distinct[train_end], distinct[val_end]


def split_of(times: np.ndarray, train_end, val_end) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test, by time against the two cut-offs."""
    return np.where(times < train_end, TRAIN, np.where(times < val_end, VAL, TEST)).astype(np.int8)


def chronological_bounds(n: int, train: float = 0.7, val: float = 0.15) -> tuple[int, int]:
    """Row indices (train_end, val_end) cutting an ordered series of ``n`` rows; each part non-empty."""
    if n < 3:
        raise ValueError(f"need at least 3 rows to split train/validation/test in time order, got {n}")
    train_end = min(max(int(n * train), 1), n - 2)
    val_end = min(max(int(n * (train + val)), train_end + 1), n - 1)
    return train_end, val_end


# ---------------------------------------------------------------------------------------------
# Model vs baselines


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Evaluation:
    """A model and its baselines scored on the same ``rows`` of the ``split`` split, in one run.

    ``scores`` maps each name to its metrics; ``model`` names the model's entry, every other
    entry is a baseline. ``metric`` is the one the verdict reads.
    """

    model: str
    metric: str
    higher_is_better: bool
    scores: dict[str, dict[str, float]]
    rows: int
    split_rule: str
    split: str = "test"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.model not in self.scores:
            raise ValueError(f"the model {self.model!r} has no scores (have {sorted(self.scores)})")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")

    @property
    def baselines(self) -> dict[str, dict[str, float]]:
        return {name: s for name, s in self.scores.items() if name != self.model}

    def value(self, name: str) -> float | None:
        value = self.scores[name].get(self.metric)
        return float(value) if _finite(value) else None

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b

    @property
    def strongest_baseline(self) -> str | None:
        """The baseline with the best finite score on the verdict metric (None when none has one)."""
        best = None
        for name in self.baselines:
            value = self.value(name)
            if value is not None and (best is None or self._better(value, self.value(best))):
                best = name
        return best

    @property
    def unscored_baselines(self) -> list[str]:
        """Baselines without a finite score on the verdict metric: the model is not shown to beat
        them, so their presence alone makes it lose (else a NaN strongest baseline would leave the
        model judged against the weaker ones)."""
        return [name for name in self.baselines if self.value(name) is None]

    @property
    def beats_strongest_baseline(self) -> bool:
        mine, strongest = self.value(self.model), self.strongest_baseline
        if mine is None or strongest is None or self.unscored_baselines:
            return False
        return self._better(mine, self.value(strongest))

    @property
    def verdict(self) -> str:
        """One line a person reads first: wins or loses, against what, on which rows."""
        strongest, mine = self.strongest_baseline, self.value(self.model)
        where = f"on {self.rows} {self.split} rows ({self.split_rule})"
        if strongest is None:
            return f"loses: no baseline has a finite {self.metric} {where}, so nothing shows the model is worth it"
        theirs = self.value(strongest)
        if mine is None:
            return f"loses: {self.model} has no finite {self.metric} {where}; {strongest} has {theirs:.4g}"
        if self.unscored_baselines:
            return (f"loses: baseline(s) {', '.join(self.unscored_baselines)} have no finite {self.metric} {where}, so "
                    f"{self.model} ({mine:.4g}) is not shown to beat them")
        relation = "ties" if mine == theirs else ("beats" if self.beats_strongest_baseline else "loses to")
        outcome = "wins" if self.beats_strongest_baseline else "loses"
        direction = "higher" if self.higher_is_better else "lower"
        return (f"{outcome}: {self.model} {self.metric} {mine:.4g} {relation} {strongest} {theirs:.4g} "
                f"(strongest of {len(self.baselines)} baselines, {direction} is better) {where}")

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per scorer, model first, with every metric and the split it comes from."""
        strongest = self.strongest_baseline
        rows = []
        for name, metrics in self.scores.items():
            role = "model" if name == self.model else ("strongest baseline" if name == strongest else "baseline")
            rows.append({"scorer": name, "role": role, "split": self.split, **shown(metrics)})
        return rows

    def markdown(self) -> str:
        rows = self.table_rows()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
        lines += ["", f"**Verdict:** {self.verdict}"] + [f"- {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "metric": self.metric, "higher_is_better": self.higher_is_better,
                "scores": self.scores, "rows": self.rows, "split_rule": self.split_rule, "split": self.split,
                "notes": list(self.notes), "strongest_baseline": self.strongest_baseline,
                "beats_strongest_baseline": self.beats_strongest_baseline, "verdict": self.verdict}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Evaluation":
        return cls(model=data["model"], metric=data["metric"], higher_is_better=bool(data["higher_is_better"]),
                   scores={k: dict(v) for k, v in data["scores"].items()}, rows=int(data["rows"]),
                   split_rule=data["split_rule"], split=data.get("split", "test"), notes=tuple(data.get("notes", ())))

    def metadata(self) -> dict[str, Any]:
        """Dagster metadata: the side-by-side table, the verdict line and the figures it rests on."""
        import dagster as dg

        strongest = self.strongest_baseline
        return {
            "evaluation": dg.MetadataValue.md(self.markdown()),
            "verdict": dg.MetadataValue.text(self.verdict),
            "beats_strongest_baseline": dg.MetadataValue.bool(self.beats_strongest_baseline),
            "strongest_baseline": dg.MetadataValue.text(strongest or "none"),
            "evaluation_split": dg.MetadataValue.text(f"{self.split}: {self.split_rule}"),
            "evaluation_rows": dg.MetadataValue.int(self.rows),
        }

    def check_result(self, check_name: str | None = None, asset_key=None):
        """The baseline-verdict asset check: passes when the model wins, WARN (yellow) when it loses."""
        import dagster as dg

        return dg.AssetCheckResult(
            check_name=check_name, asset_key=asset_key, passed=self.beats_strongest_baseline,
            severity=dg.AssetCheckSeverity.WARN, description=self.verdict, metadata=self.metadata())


def promotion_refusal(evaluation: Evaluation | None) -> str | None:
    """None when ``evaluation`` allows promotion to production, else the reason it does not.

    The one rule: the model must beat its strongest baseline on the test split.
    """
    if evaluation is None:
        return "no evaluation was recorded for this candidate, so it cannot be promoted"
    if evaluation.split != "test":
        return f"the verdict was read on the {evaluation.split} split; promotion needs the test split"
    if not evaluation.beats_strongest_baseline:
        return f"not promoted: {evaluation.verdict}"
    return None


def refuse_unless_promotable(evaluation: Evaluation | None, **metadata: Any) -> None:
    """Raise ``dg.Failure`` naming why, so a refused promotion shows its reason on the run and asset pages."""
    reason = promotion_refusal(evaluation)
    if reason is None:
        return
    import dagster as dg

    extra = evaluation.metadata() if evaluation is not None else {}
    raise dg.Failure(description=reason, metadata={**extra, **metadata})
