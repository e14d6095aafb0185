"""PatchTST classifier pieces shared by the asset, the torchrun worker and the benchmark: the
model from a plain dict of architecture values, the first-second inputs, the baselines, metrics
from a confusion matrix (the training config is ``netassets.lens.config.TrainConfig``).

Nothing here imports torch at module level (the Dagster code location loads without it), nor
dagster or sklearn (the torchrun workers start without them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from netassets.lens.config import CONTEXT_POINTS, MONITORS, TrainConfig  # noqa: F401  (re-exported)
from netassets.lens.cleaning import observed_mask, token_fill
from netassets.lens.features import feature_matrix, series_matrix

if TYPE_CHECKING:  # the torchrun worker imports this module: keep dagster, DuckDB and sklearn out of it
    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.lens.clustering import GmmModel

CHANNEL_COLUMNS = {"token": ("rtt_token",), "nearest": ("rtt_nearest",), "both": ("rtt_token", "rtt_nearest")}
# A resumed or reloaded checkpoint must agree on these, or its weights do not fit the model.
ARCH_KEYS = (
    "num_input_channels", "context_length", "patch_length", "patch_stride", "d_model",
    "num_attention_heads", "num_hidden_layers", "ffn_dim", "num_targets",
)
WEIGHTS_FILE = "model.safetensors"  # the best weights of a finished run; what the model store promotes


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


def load_weights_model(path):
    """The classifier saved at ``path`` (``WEIGHTS_FILE``), rebuilt from its recorded architecture and loaded
    strictly; with the metadata saved beside the tensors (arch, best epoch, input standardisation)."""
    import json

    from netassets.core.training import load_weights

    tensors, metadata = load_weights(path)
    model = build_model(json.loads(metadata["arch"]))
    model.load_state_dict(tensors, strict=True)
    return model.eval(), metadata


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
    feature_cols = ", ".join(f"f.{name}" for name in gmm.features)
    frame = warehouse.query(
        f"""
        SELECT c.day, c.region, c.group_id, c.rtt_nearest[1:{CONTEXT_POINTS}] AS rtt_nearest, c.rtt_observed,
               {feature_cols}
        FROM lens_clean_groups c
        JOIN lens_group_features f USING (day, region, group_id)
        ORDER BY c.day, c.region, c.group_id
        """
    )
    if frame.is_empty():
        raise ValueError("no LENS groups with features in the warehouse: materialise lens_group_features first")
    labels, _ = gmm.predict(feature_matrix(frame, gmm.features))
    nearest = series_matrix(frame["rtt_nearest"], CONTEXT_POINTS)

    def channel(column: str) -> np.ndarray:
        if column == "rtt_nearest":
            return nearest
        return token_fill(nearest, observed_mask(frame["rtt_observed"].to_list(), CONTEXT_POINTS))

    inputs = np.stack([channel(col) for col in columns], axis=-1).astype(np.float32)
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
