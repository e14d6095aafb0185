"""The global GMM: k chosen by silhouette, stored as plain parameters (JSON), applied with numpy.

A fitted sklearn object is never pickled: the model file holds the feature names, the
scaler's mean/scale and the diagonal GMM's weights, means and variances, which is all
``predict_proba`` needs. Cluster ids are ordered by the mean RTT of their centre, so
"cluster 0" is the lowest-latency regime in every retrain.

sklearn is imported inside the fitting functions: the code location imports this module for
``GmmModel``, and only the lens_gmm step fits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from netassets.core.files import write_json
from netassets.lens.features import FEATURES

if TYPE_CHECKING:
    from sklearn.mixture import GaussianMixture

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SelectionSettings:
    k_min: int = 6
    k_max: int = 15
    restarts: int = 5
    max_iter: int = 300
    # A solution whose smallest cluster holds less than this share of the sample is rejected:
    # a near-empty component is a GMM fitting a handful of outliers, not a regime.
    min_cluster_share: float = 0.01
    silhouette_sample: int = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}")
        if self.restarts < 1 or self.max_iter < 1:
            raise ValueError("restarts and max_iter must be >= 1")
        if not 0 <= self.min_cluster_share < 1:
            raise ValueError(f"min_cluster_share must be in [0, 1), got {self.min_cluster_share}")


@dataclass
class GmmModel:
    features: list[str]
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d), standardised space
    variances: np.ndarray  # (k, d), diagonal covariances, standardised space
    info: dict[str, Any] = field(default_factory=dict)  # how it was trained: partitions, scores

    @property
    def k(self) -> int:
        return len(self.weights)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        if features.ndim != 2 or features.shape[1] != len(self.features):
            raise ValueError(f"expected (groups, {len(self.features)}) features {self.features}, got {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError("features contain NaN or infinite values; the GMM cannot assign those groups")
        return (features - self.scaler_mean) / self.scaler_scale

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = self.standardise(features)
        precision = 1.0 / self.variances
        log_norm = np.log(self.weights) - 0.5 * (z.shape[1] * np.log(2 * np.pi) + np.log(self.variances).sum(axis=1))
        # sum_d (z - mu)^2 / var expanded into matrix products, as sklearn scores diagonal GMMs:
        # (groups, k) arrays only, where broadcasting z - mu made (groups, k, d), ~1 GB for 1 M groups.
        weighted = -0.5 * (z**2 @ precision.T - 2 * z @ (self.means * precision).T
                           + (self.means**2 * precision).sum(axis=1))
        weighted += log_norm  # log weight + log density, per group and component
        # Softmax over components in place; the row max is subtracted so that exp cannot overflow.
        weighted -= weighted.max(axis=1, keepdims=True)
        proba = np.exp(weighted, out=weighted)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cluster id, its posterior probability) per row."""
        proba = self.predict_proba(features)
        labels = proba.argmax(axis=1)
        return labels, proba[np.arange(len(labels)), labels]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "features": list(self.features),
            "scaler_mean": self.scaler_mean.tolist(),
            "scaler_scale": self.scaler_scale.tolist(),
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "variances": self.variances.tolist(),
            "info": self.info,
        }

    @property
    def version(self) -> str:
        """Content hash of the parameters: tells which GMM produced a table of clusters."""
        params = {k: v for k, v in self.to_dict().items() if k != "info"}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]

    def save(self, path: Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "GmmModel":
        if not path.is_file():
            raise FileNotFoundError(f"no GMM at {path}: materialise lens_gmm first")
        raw = json.loads(path.read_text())
        if raw.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path}: GMM format {raw.get('format_version')!r}, expected {FORMAT_VERSION}")
        unknown = sorted(set(raw["features"]) - set(FEATURES))  # they become SQL column names
        if unknown:
            raise ValueError(f"{path}: unknown feature(s) {unknown}; expected a subset of {list(FEATURES)}")
        return cls(
            features=list(raw["features"]),
            scaler_mean=np.asarray(raw["scaler_mean"]),
            scaler_scale=np.asarray(raw["scaler_scale"]),
            weights=np.asarray(raw["weights"]),
            means=np.asarray(raw["means"]),
            variances=np.asarray(raw["variances"]),
            info=raw.get("info", {}),
        )


def fit_gmm(z: np.ndarray, k: int, settings: SelectionSettings) -> GaussianMixture:
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(
        n_components=k,
        covariance_type="diag",
        init_params="k-means++",
        n_init=settings.restarts,
        max_iter=settings.max_iter,
        random_state=settings.seed,
    ).fit(z)


def select_gmm(features: np.ndarray, names: list[str], settings: SelectionSettings) -> tuple[GmmModel, list[dict]]:
    """Fit a GMM for each k in the range on standardised features; keep the best silhouette.

    Returns the model (clusters ordered by mean RTT) and one score row per k.
    """
    from sklearn.metrics import silhouette_score

    n = len(features)
    if n <= settings.k_max:
        raise ValueError(f"{n} groups are too few to fit up to k={settings.k_max} clusters")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values; refusing to fit the GMM")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature carries no information; keep it finite
    z = (features - mean) / scale
    rows, best = [], None
    for k in range(settings.k_min, settings.k_max + 1):
        gmm = fit_gmm(z, k, settings)
        labels = gmm.predict(z)
        sizes = np.bincount(labels, minlength=k)
        near_empty = sizes.min() < settings.min_cluster_share * n
        score = float(
            silhouette_score(z, labels, sample_size=min(settings.silhouette_sample, n), random_state=settings.seed)
        ) if len(np.unique(labels)) > 1 else float("nan")
        rows.append({"k": k, "silhouette": score, "smallest_cluster": int(sizes.min()), "rejected": bool(near_empty)})
        if not near_empty and np.isfinite(score) and (best is None or score > best[0]):
            best = (score, gmm)
    if best is None:
        raise ValueError(
            f"every k in {settings.k_min}..{settings.k_max} left a cluster under {settings.min_cluster_share:.1%} "
            "of the sample; lower min_cluster_share or the k range"
        )
    gmm = best[1]
    order_by = names.index("mean") if "mean" in names else 0
    order = np.argsort(gmm.means_[:, order_by])
    model = GmmModel(
        features=list(names),
        scaler_mean=mean,
        scaler_scale=scale,
        weights=gmm.weights_[order],
        means=gmm.means_[order],
        variances=gmm.covariances_[order],
    )
    return model, rows


def tree_importance_ranking(features: np.ndarray, names: list[str], labels: np.ndarray, seed: int = 0) -> list[dict]:
    """The seed's selection: features ranked by a decision tree's importance at predicting GMM labels."""
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(random_state=seed, min_samples_leaf=5).fit(features, labels)
    ranked = sorted(zip(names, tree.feature_importances_), key=lambda item: -item[1])
    return [{"feature": name, "importance": float(value)} for name, value in ranked]
