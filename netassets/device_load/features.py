"""Per-router winsorisation and robust scaling, the sampling step and grid, sliding windows.

The seed's order, minus its leak: winsorisation bounds and scaler statistics are fitted on the
training period only (the seed winsorised the whole file before splitting). Per router and
feature: Tukey fences from the training quartiles, values clipped to the most extreme training
value inside the fences (the seed's rule), then (x - median) / IQR of the clipped training
values (sklearn's RobustScaler; an IQR of 0 scales by 1, as sklearn does).

Model inputs are winsorised then scaled. Training targets (next max, next mean) are the scaled
winsorised values, so a spike in the history does not teach the model to predict spikes; the
*actual* used for anomaly errors is scaled but not winsorised, so a spike stays visible.
Scalers are plain JSON (no pickle), saved beside the model and embedded in its checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from netassets.core.files import atomic_write, write_json

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
