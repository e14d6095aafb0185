"""PatchTST classifier pieces shared by the asset, the torchrun worker and the benchmark:
the training config and learning-rate schedule, the model from a plain dict of architecture
values, the first-second inputs, the baselines, and metrics from a confusion matrix.

Nothing here imports torch at module level (the Dagster code location loads without it), nor
dagster or sklearn (the torchrun workers start without them).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from netassets.lens.features import feature_matrix, series_matrix

if TYPE_CHECKING:  # the torchrun worker imports this module: keep dagster, DuckDB and sklearn out of it
    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.lens.clustering import GmmModel

CONTEXT_POINTS = 100  # the first 1.0 s of a group at 10 ms
CHANNEL_COLUMNS = {"token": ("rtt_token",), "nearest": ("rtt_nearest",), "both": ("rtt_token", "rtt_nearest")}
# A resumed or reloaded checkpoint must agree on these, or its weights do not fit the model.
ARCH_KEYS = (
    "num_input_channels", "context_length", "patch_length", "patch_stride", "d_model",
    "num_attention_heads", "num_hidden_layers", "ffn_dim", "num_targets",
)

# Metrics that can pick best.pt, and whether lower or higher is better.
MONITORS = {"val_loss": "min", "val_accuracy": "max", "val_macro_f1": "max"}
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Every knob of the seed's train_patchtst.py; the worker's flags and the asset's run config."""

    data: str = ""
    out_dir: str = ""
    # The default recipe, chosen on validation days of bench/lens_train.py's data: 30 epochs
    # (the seed's 5 stopped far short), warmup + cosine decay, best.pt by validation macro-F1,
    # 10-point patches every 5 points (19 overlapping patches rather than 5 of 20 points) and
    # the nearest-filled channel alone (LensPatchTSTConfig.channels).
    epochs: int = 30
    batch_size: int = 64  # per process
    lr: float = 3e-3  # peak learning rate
    lr_schedule: str = "cosine"  # "cosine": linear warmup then cosine decay to min_lr_ratio * lr; "constant"
    warmup_fraction: float = 0.05  # share of all optimiser steps spent warming up
    min_lr_ratio: float = 0.1
    label_smoothing: float = 0.0
    weight_decay: float = 0.01
    amp: bool = True  # bfloat16 autocast, GPU only
    patch_length: int = 10
    patch_stride: int = 5  # 0: same as patch_length (non-overlapping patches)
    d_model: int = 64
    num_attention_heads: int = 4
    num_hidden_layers: int = 2
    ffn_dim: int = 128
    attention_dropout: float = 0.1
    ff_dropout: float = 0.2
    positional_dropout: float = 0.05
    path_dropout: float = 0.05
    eval_interval: int = 1  # epochs
    save_interval: int = 1  # epochs
    monitor_metric: str = "val_macro_f1"
    num_workers: int = 0
    seed: int = 0
    resume: bool = True  # continue from out_dir/last.pt when it exists
    resume_from: str = ""  # or from this checkpoint (must have the same architecture)
    max_steps: int = 0  # stop (saving last.pt) after this many optimiser steps in total; 0: no limit

    def __post_init__(self) -> None:
        problems = []
        if self.lr_schedule not in LR_SCHEDULES:
            problems.append(f"lr_schedule {self.lr_schedule!r} is not one of {list(LR_SCHEDULES)}")
        for name in ("warmup_fraction", "min_lr_ratio", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.monitor_metric not in MONITORS:
            problems.append(f"monitor_metric {self.monitor_metric!r} is not one of {sorted(MONITORS)}")
        stride = self.patch_stride or self.patch_length
        if not 1 <= self.patch_length <= CONTEXT_POINTS or stride < 1:
            problems.append(f"patch_length must be in 1..{CONTEXT_POINTS} and patch_stride >= 0")
        for name in ("epochs", "batch_size", "eval_interval", "save_interval", "d_model", "num_attention_heads",
                     "num_hidden_layers", "ffn_dim"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_attention_heads >= 1 and self.d_model % self.num_attention_heads:
            problems.append(f"d_model {self.d_model} must be divisible by num_attention_heads {self.num_attention_heads}")
        for name in ("attention_dropout", "ff_dropout", "positional_dropout", "path_dropout"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.num_workers < 0 or self.max_steps < 0:
            problems.append("lr must be > 0; weight_decay, num_workers and max_steps >= 0")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def arch(self, num_input_channels: int, num_targets: int) -> dict[str, Any]:
        return {
            "num_input_channels": num_input_channels, "context_length": CONTEXT_POINTS,
            "patch_length": self.patch_length, "patch_stride": self.patch_stride or self.patch_length,
            "d_model": self.d_model, "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers, "ffn_dim": self.ffn_dim, "num_targets": num_targets,
        }

    def learning_rate(self, step: int, total_steps: int) -> float:
        """nanoGPT's schedule: linear warmup over the first ``warmup_fraction`` of the steps, then
        cosine decay to ``min_lr_ratio * lr`` at the last step (or constant after the warmup)."""
        warmup = int(self.warmup_fraction * total_steps)
        if step < warmup:
            return self.lr * (step + 1) / (warmup + 1)
        if self.lr_schedule == "constant":
            return self.lr
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        min_lr = self.min_lr_ratio * self.lr
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - min_lr)

    def dropouts(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in ("attention_dropout", "ff_dropout", "positional_dropout", "path_dropout")}

    def to_args(self) -> list[str]:
        """The command-line flags that reproduce this config."""
        return [f"--{f.name.replace('_', '-')}={getattr(self, f.name)}" for f in dataclasses.fields(self)]


def channel_columns(channels: str) -> tuple[str, ...]:
    if channels not in CHANNEL_COLUMNS:
        raise ValueError(f"unknown channel choice {channels!r}; expected one of {sorted(CHANNEL_COLUMNS)}")
    return CHANNEL_COLUMNS[channels]


def build_model(arch: dict[str, Any], dropouts: dict[str, float] | None = None):
    from transformers import PatchTSTConfig, PatchTSTForClassification

    config = PatchTSTConfig(
        **{key: arch[key] for key in ARCH_KEYS},
        use_cls_token=True,
        # Inputs arrive standardised per channel over the training set. PatchTST's default
        # per-series "std" scaling would erase each group's latency level, which is most of
        # what separates the clusters.
        scaling=None,
        **(dropouts or {}),
    )
    return PatchTSTForClassification(config)


@dataclass
class ClassifierData:
    frame: pl.DataFrame  # day, region, group_id, cluster
    inputs: np.ndarray  # (groups, 100, channels) float32: RTT in ms, token gaps stay -1
    labels: np.ndarray  # (groups,) cluster id


def load_classifier_data(warehouse: DuckDBWarehouse, gmm: GmmModel, channels: str) -> ClassifierData:
    """Every group with features: its first second on the chosen channels, labelled by the current GMM.

    Labels come from the GMM itself rather than the lens_clusters table, so a retrain of
    lens_gmm followed by lens_patchtst in one run never trains on stale clusters.
    """
    columns = channel_columns(channels)
    slices = ", ".join(f"c.{col}[1:{CONTEXT_POINTS}] AS {col}" for col in columns)
    feature_cols = ", ".join(f"f.{name}" for name in gmm.features)
    frame = warehouse.query(
        f"""
        SELECT c.day, c.region, c.group_id, {slices}, {feature_cols}
        FROM lens_clean_groups c
        JOIN lens_group_features f USING (day, region, group_id)
        ORDER BY c.day, c.region, c.group_id
        """
    )
    if frame.is_empty():
        raise ValueError("no LENS groups with features in the warehouse: materialise lens_group_features first")
    labels, _ = gmm.predict(feature_matrix(frame, gmm.features))
    inputs = np.stack([series_matrix(frame[col], CONTEXT_POINTS) for col in columns], axis=-1).astype(np.float32)
    return ClassifierData(frame.select("day", "region", "group_id").with_columns(cluster=labels), inputs, labels)


def check_clusters_trainable(labels: dict[str, np.ndarray], num_classes: int) -> None:
    """A cluster seen in validation or test but never in training cannot be learnt: say which."""
    trained = set(np.unique(labels["train"]).tolist())
    for split in ("val", "test"):
        absent = sorted(set(np.unique(labels[split]).tolist()) - trained)
        if absent:
            raise ValueError(
                f"cluster(s) {absent} occur in the {split} days but not in the training days, so the classifier "
                f"cannot learn them (GMM has {num_classes} clusters); use more days or a smaller k for lens_gmm"
            )


def class_weights(train_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights (balanced); a cluster absent from training gets weight 0."""
    counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def confusion(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores_from_confusion(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (over clusters present in truth or predictions, as sklearn does)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    tp = np.diag(matrix)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    used = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=(support + predicted) > 0)
    return {
        "accuracy": float(tp.sum() / total) if total else float("nan"),
        "macro_f1": float(f1[used].mean()) if used.any() else float("nan"),
    }


def baseline_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                    num_classes: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Majority class and a balanced logistic regression on the same (standardised) 100 points."""
    from sklearn.linear_model import LogisticRegression

    majority = int(np.bincount(y_train, minlength=num_classes).argmax())
    flat_train, flat_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    logreg = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed).fit(flat_train, y_train)
    return {
        "majority_class": scores_from_confusion(confusion(y_test, np.full_like(y_test, majority), num_classes)),
        "logistic_regression": scores_from_confusion(confusion(y_test, logreg.predict(flat_test), num_classes)),
    }
