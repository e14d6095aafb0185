"""Per-router winsorisation and robust scaling, the sampling step and grid, sliding windows.

The seed's order, minus its leak: winsorisation bounds and scaler statistics are fitted on the
training period only (the seed winsorised the whole file before splitting). Per router and
feature: Tukey fences from the training quartiles, values clipped to the most extreme training
value inside the fences (the seed's rule), then (x - median) / IQR of the clipped training
values (sklearn's RobustScaler; an IQR of 0 scales by 1, as sklearn does).

Model inputs are winsorised then scaled. Training targets (next max, next mean) are the scaled
winsorised values, so a spike in the history does not teach the model to predict spikes; the
*actual* used for anomaly errors is scaled but not winsorised, so a spike stays visible.
Scalers are plain JSON (no pickle), saved beside the windows and embedded in the weights' safetensors metadata.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from netassets.core.evaluation import split_of, time_cutoffs
from netassets.core.files import atomic_write, write_json
from netassets.core.sql import load_sql
from netassets.device_load.landing import PIPELINE

FEATURES = (
    "max_metric_value", "mean_metric_value", "diff", "ratio",
    "delta_max", "delta_mean", "zscore_max", "zscore_mean",
)
TARGETS = (0, 1)  # next max_metric_value, next mean_metric_value
TARGET_COLUMNS = ("max_metric_value", "mean_metric_value")


@dataclass(frozen=True)
class RouterScaler:
    lower: list[float]
    upper: list[float]
    median: list[float]
    iqr: list[float]

    @classmethod
    def fit(cls, values: np.ndarray) -> "RouterScaler":
        q1, q3 = np.percentile(values, [25, 75], axis=0)
        fence_low, fence_high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        lower = np.where(values >= fence_low, values, np.inf).min(axis=0)
        upper = np.where(values <= fence_high, values, -np.inf).max(axis=0)
        clipped = np.clip(values, lower, upper)
        c1, median, c3 = np.percentile(clipped, [25, 50, 75], axis=0)
        iqr = np.where(c3 - c1 > 0, c3 - c1, 1.0)
        return cls(lower.tolist(), upper.tolist(), median.tolist(), iqr.tolist())

    def scale(self, values: np.ndarray, winsorise: bool = True) -> np.ndarray:
        if winsorise:
            values = np.clip(values, self.lower, self.upper)
        return (values - np.asarray(self.median)) / np.asarray(self.iqr)

    def unscale_targets(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled (max, mean) predictions back to metric units."""
        idx = list(TARGETS)
        return scaled * np.asarray(self.iqr)[idx] + np.asarray(self.median)[idx]


@dataclass(frozen=True)
class Scalers:
    routers: list[str]  # position = the router's embedding id
    window: int
    step_seconds: int
    train_end: str  # ISO timestamps: targets before train_end train, before val_end validate
    val_end: str
    per_router: dict[str, RouterScaler]

    def router_id(self, router: str) -> int | None:
        return self.routers.index(router) if router in self.per_router else None

    def to_dict(self) -> dict:
        return {**asdict(self), "features": list(FEATURES)}

    @classmethod
    def from_dict(cls, data: dict) -> "Scalers":
        if tuple(data.get("features", ())) != FEATURES:
            raise ValueError(f"scalers were fitted on features {data.get('features')}, expected {list(FEATURES)}")
        per_router = {r: RouterScaler(**s) for r, s in data["per_router"].items()}
        return cls(list(data["routers"]), int(data["window"]), int(data["step_seconds"]),
                   data["train_end"], data["val_end"], per_router)

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())


@dataclass
class Windows:
    """Sliding windows over contiguous stretches of each router's series."""

    x: np.ndarray  # (n, window, features) scaled, winsorised
    y: np.ndarray  # (n, 2) next max/mean, scaled, winsorised (training target)
    actual: np.ndarray  # (n, 2) next max/mean, scaled, not winsorised (for anomaly errors)
    router_id: np.ndarray  # (n,) int64
    target_time: np.ndarray  # (n,) datetime64[us]
    row: np.ndarray  # (n,) position of the target row in the input frame

    def take(self, mask: np.ndarray) -> "Windows":
        return Windows(*(getattr(self, f)[mask] for f in ("x", "y", "actual", "router_id", "target_time", "row")))

    def __len__(self) -> int:
        return len(self.y)

    def save(self, path: Path, split: np.ndarray) -> None:
        atomic_write(path, lambda handle: np.savez(
            handle, x=self.x, y=self.y, actual=self.actual, router_id=self.router_id,
            target_time=self.target_time.astype("int64"), row=self.row, split=split))


def infer_step_seconds(frame: pl.DataFrame) -> int:
    """The sampling step: the median gap between consecutive rows of the same router, in whole seconds.

    The median, not the smallest gap, so a few early or duplicated samples do not halve the
    step; gaps (missing samples) are rarer than regular steps, so they do not move it either.
    """
    gaps = (frame.sort("router", "timeslot")
            .select(pl.col("timeslot").diff().over("router").dt.total_seconds().alias("gap"))
            .filter(pl.col("gap") > 0)["gap"])
    if gaps.is_empty():
        raise ValueError(f"cannot infer the sampling step from {frame.height} rows: no router has two distinct timeslots")
    return max(int(round(gaps.median())), 1)


def regular_grid(raw: pl.DataFrame, step_seconds: int, max_fill_steps: int = 2) -> pl.DataFrame:
    """Resample device_data rows to a regular ``step_seconds`` grid per router (the documented rule).

    - each timeslot is floored to the grid (``timeslot - timeslot mod step``, UTC epoch origin);
    - rows falling in the same grid step merge: max of ``max_metric_value``, mean of ``mean_metric_value``;
    - a hole of up to ``max_fill_steps`` missing steps is filled with the last value before it
      (causal: never a later value), so irregular sampling does not break every window;
      longer holes stay holes (windows never span them).

    Integer metric values are accepted and become floats. Columns other than router, region,
    hostname, ifname, timeslot and the two metrics are dropped; ``day`` is recomputed.
    """
    step = f"{int(step_seconds)}s"
    merged = (raw.with_columns(pl.col("timeslot").dt.truncate(step), *(pl.col(m).cast(pl.Float64) for m in TARGET_COLUMNS))
              .group_by("router", "region", "hostname", "ifname", "timeslot")
              .agg(pl.col("max_metric_value").max(), pl.col("mean_metric_value").mean())
              .sort("router", "timeslot"))
    grid = (merged.group_by("router", "region", "hostname", "ifname", maintain_order=True)
            .agg(pl.datetime_ranges(pl.col("timeslot").min(), pl.col("timeslot").max(), step).alias("timeslot"))
            .explode("timeslot"))
    filled = (grid.join(merged, on=["router", "region", "hostname", "ifname", "timeslot"], how="left")
              .sort("router", "timeslot")
              .with_columns(*(pl.col(m).forward_fill(limit=max_fill_steps).over("router") for m in TARGET_COLUMNS))
              .drop_nulls(TARGET_COLUMNS))
    return filled.with_columns(pl.col("timeslot").dt.date().alias("day")).select(
        "day", "region", "router", "hostname", "ifname", "timeslot", *TARGET_COLUMNS)


def fit_scalers(frame: pl.DataFrame, window: int, step_seconds: int, train_end: np.datetime64,
                val_end: np.datetime64) -> Scalers:
    """Per-router scalers from the rows before ``train_end``; routers with none are left out."""
    fitted: dict[str, RouterScaler] = {}
    train = frame.filter(pl.col("timeslot") < pl.lit(train_end.astype("datetime64[us]").item()))
    for (router,), rows in train.group_by("router", maintain_order=True):
        fitted[router] = RouterScaler.fit(rows.select(FEATURES).to_numpy().astype(np.float64))
    if not fitted:
        raise ValueError("no training rows before the train cut-off; load more days")
    routers = sorted(fitted)
    return Scalers(routers, window, step_seconds, str(train_end), str(val_end), fitted)


def build_windows(frame: pl.DataFrame, scalers: Scalers) -> tuple[Windows, dict[str, str]]:
    """Windows of ``scalers.window`` consecutive steps -> the next step, for every known router.

    ``frame`` holds feature rows sorted by router and timeslot. A window never spans a gap:
    every step inside it and to its target must be exactly ``step_seconds``. Returns the
    windows and {router: reason} for routers that yield none (unseen at training time, or a
    series shorter than the window).
    """
    w, step = scalers.window, np.timedelta64(scalers.step_seconds, "s")
    parts, skipped = [], {}
    for (router,), rows in frame.with_row_index("_row").group_by("router", maintain_order=True):
        router_id = scalers.router_id(router)
        if router_id is None:
            skipped[router] = "unseen at training time (no scaler or embedding): retrain device_load_model"
            continue
        if rows.height <= w:
            skipped[router] = f"series of {rows.height} rows is not longer than the window ({w})"
            continue
        scaler = scalers.per_router[router]
        raw = rows.select(FEATURES).to_numpy().astype(np.float64)
        times = rows["timeslot"].to_numpy().astype("datetime64[us]")
        scaled, unclipped = scaler.scale(raw), scaler.scale(raw, winsorise=False)
        # broken[i] = 1 if the step into row i is not exactly one step; a window starting at s
        # is valid when no break falls in rows s+1 .. s+w (inputs and target).
        broken = np.concatenate([[0], (np.diff(times) != step).astype(np.int64)])
        breaks = np.cumsum(broken)
        starts = np.arange(rows.height - w)
        starts = starts[breaks[starts + w] - breaks[starts] == 0]
        if not len(starts):
            skipped[router] = f"no {w + 1} consecutive steps of {scalers.step_seconds} s"
            continue
        index = starts[:, None] + np.arange(w)[None, :]
        targets = starts + w
        parts.append(Windows(
            x=scaled[index].astype(np.float32),
            y=scaled[targets][:, TARGETS].astype(np.float32),
            actual=unclipped[targets][:, TARGETS].astype(np.float32),
            router_id=np.full(len(starts), router_id, dtype=np.int64),
            target_time=times[targets],
            row=rows["_row"].to_numpy().astype(np.int64)[targets],
        ))
    if not parts:
        empty = np.zeros((0,), dtype=np.int64)
        return Windows(np.zeros((0, scalers.window, len(FEATURES)), np.float32), np.zeros((0, 2), np.float32),
                       np.zeros((0, 2), np.float32), empty, empty.astype("datetime64[us]"), empty), skipped
    return Windows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "actual", "router_id", "target_time", "row"))), skipped


def load_windows(path: Path) -> tuple[Windows, np.ndarray]:
    with np.load(path) as data:
        windows = Windows(data["x"], data["y"], data["actual"], data["router_id"],
                          data["target_time"].astype("datetime64[us]"), data["row"])
        return windows, data["split"]


# ---------------------------------------------------------------------------------------------
# The training windows of device_load_windows

SPLIT_RULE = "by target time: first 80 % of distinct times train, next 10 % validate (early stopping), last 10 % test"
SPLITS = ("train", "val", "test")


def load_history(warehouse, region: str | None, first_day: dt.date | None, last_day: dt.date | None) -> pl.DataFrame:
    """Feature rows sorted by router and time (``dbt_like_sql/device_load/device_load_history.sql``);
    None leaves the region or a bound open."""
    return warehouse.query(load_sql(PIPELINE, "device_load_history"),
                           {"region": region, "first_day": first_day, "last_day": last_day})


@dataclass(frozen=True)
class TrainingWindows:
    """What ``save_training_windows`` wrote, for the asset's metadata."""

    counts: dict[str, int]
    routers: int
    step_seconds: int
    step_rule: str
    train_end: np.datetime64
    val_end: np.datetime64
    skipped: dict[str, str]


def save_training_windows(history: pl.DataFrame, window: int, step_minutes: int | None,
                          windows_path: Path, scalers_path: Path) -> TrainingWindows:
    """Scalers fitted on training times, windows split 80/10/10 by target time, both saved.

    Raises ValueError naming the step, its origin and the window counts when the history is too
    short for a train/validation split.
    """
    if window < 2 or (step_minutes is not None and step_minutes < 1):
        raise ValueError(f"window must be >= 2 and step_minutes >= 1, got {window} and {step_minutes}")
    if history.is_empty():
        raise ValueError("device_load_features is empty for the chosen days: materialise some partitions first")
    step_seconds = step_minutes * 60 if step_minutes is not None else infer_step_seconds(history)
    step_rule = "configured" if step_minutes is not None else "inferred from the data"
    times = history["timeslot"].to_numpy().astype("datetime64[us]")
    # The cut-offs come from the row times; targets follow their rows, so the split is by target time.
    train_end, val_end = time_cutoffs(times, train=0.8, val=0.1)
    scalers = fit_scalers(history, window, step_seconds, train_end, val_end)
    windows, skipped = build_windows(history, scalers)
    split = split_of(windows.target_time, train_end, val_end)
    counts = {name: int((split == i).sum()) for i, name in enumerate(SPLITS)}
    if not counts["train"] or not counts["val"]:
        raise ValueError(
            f"too little history for a train/validation split of {window}-step windows at a step of "
            f"{step_seconds} s ({step_rule}): {history.height} feature rows of {history['router'].n_unique()} routers "
            f"gave windows {counts}; a window needs {window + 1} consecutive rows {step_seconds} s apart"
            + ("" if step_minutes is None else "; is step_minutes right for this data?"))
    windows.save(windows_path, split)
    scalers.save(scalers_path)
    return TrainingWindows(counts, len(scalers.routers), step_seconds, step_rule, train_end, val_end, skipped)


def features_sql() -> str:
    """The seed's features per router for one (day, region): ``dbt_like_sql/device_load/device_load_features.sql``."""
    return load_sql(PIPELINE, "device_load_features")


def router_gaps(warehouse, day: dt.date, region: str) -> pl.DataFrame:
    """Each router's step to its previous sample, in minutes (``device_load_gaps.sql``), for the gap check."""
    return warehouse.query(load_sql(PIPELINE, "device_load_gaps"), {"day": day, "region": region})
