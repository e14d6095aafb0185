"""Per-router winsorisation and robust scaling, sliding windows and the time-ordered split.

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


def time_cutoffs(times: np.ndarray, train: float = 0.8, val: float = 0.1) -> tuple[np.datetime64, np.datetime64]:
    """Timestamps splitting the distinct target times 80/10/10, the same cut for every router."""
    distinct = np.unique(times)
    if len(distinct) < 3:
        raise ValueError(f"need at least 3 distinct target times to split train/val/test, got {len(distinct)}")
    return distinct[max(int(len(distinct) * train), 1)], distinct[min(max(int(len(distinct) * (train + val)), 2), len(distinct) - 1)]


def split_of(times: np.ndarray, train_end: np.datetime64, val_end: np.datetime64) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test, by target time."""
    return np.where(times < train_end, 0, np.where(times < val_end, 1, 2)).astype(np.int8)


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
