"""Detection: causal scoring of a hand-made series, DBSCAN labelling with known outliers, fallbacks."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from netassets.device_load.detect import ANOMALY, Detector, SeedDbscan, dbscan_labels, detect, kdistance_eps, router_eps
from netassets.device_load.features import FEATURES, RouterScaler, Scalers
from netassets.device_load.likelihood import LikelihoodConfig
from netassets.device_load.model import EmbedLSTM, ModelConfig

START = dt.datetime(2025, 6, 20)
WINDOW = 4


def _frame(values) -> pl.DataFrame:
    n = len(values)
    columns = {f: np.asarray(values, dtype=float) * (i + 1) for i, f in enumerate(FEATURES)}
    return pl.DataFrame({"day": [START.date()] * n, "region": "nl", "router": "a",
                         "timeslot": [START + dt.timedelta(hours=h) for h in range(n)], **columns})


def _detector(val_errors: int = 30) -> Detector:
    torch.manual_seed(0)
    flat = RouterScaler([-1e9] * 8, [1e9] * 8, [0.0] * 8, [1.0] * 8)
    scalers = Scalers(["a"], WINDOW, 3600, "", "", {"a": flat})
    val_times = np.array([np.datetime64(START - dt.timedelta(hours=val_errors - h), "us") for h in range(val_errors)])
    errors = np.abs(np.random.default_rng(0).normal(0, 0.1, (val_errors, 2))).astype(np.float32)
    return Detector(EmbedLSTM(ModelConfig(n_routers=1)), scalers, errors, np.zeros(val_errors, dtype=np.int64), val_times)


def test_detection_is_causal_no_score_uses_a_later_point():
    values = np.sin(np.arange(120) / 4.0)
    values[90] = 25.0  # a spike the (untrained) forecaster cannot predict
    config = LikelihoodConfig(short_window=3, long_window=60, min_history=20, refractory=10)
    period = (START + dt.timedelta(hours=40), START + dt.timedelta(hours=120))
    first = detect(_frame(values), _detector(), period, "likelihood", config).table
    assert first["time"].min() == period[0] and first.height == 80
    later = values.copy()
    later[70:] = -50.0  # rewrite everything from hour 70 on
    second = detect(_frame(later), _detector(), period, "likelihood", config).table
    before = pl.col("time") < START + dt.timedelta(hours=70)
    columns = ["predicted_max", "error_max", "likelihood", "label"]
    assert first.filter(before).select(columns).equals(second.filter(before).select(columns))
    assert not first.filter(~before).select(columns).equals(second.filter(~before).select(columns))
    assert first.filter(pl.col("is_anomaly"))["time"].to_list() == [START + dt.timedelta(hours=90)]


def test_a_router_with_too_few_validation_errors_falls_back_to_the_fixed_eps():
    few = np.abs(np.random.default_rng(4).normal(0, 0.1, (12, 2)))
    eps, why = router_eps(few, SeedDbscan(eps=1.0, min_samples=150, eps_quantile=0.99))
    assert eps == 1.0 and "12 validation errors are too few" in why and "fixed eps 1.0" in why
    eps, why = router_eps(few, SeedDbscan(eps=1.0, min_samples=5, eps_quantile=0.99))
    assert why is None and eps == kdistance_eps(few, 5, 0.99)
    # In a detection run the router is still scored and the note names it.
    detection = detect(_frame(np.sin(np.arange(60) / 4.0)), _detector(val_errors=12), None, "seed_dbscan",
                       dbscan=SeedDbscan(min_samples=150, eps_quantile=0.99))
    assert detection.table.height == 60 - WINDOW and "too few" in detection.notes["a"]


def test_a_router_without_enough_history_is_noted_not_flagged():
    detection = detect(_frame(np.sin(np.arange(30) / 4.0)), _detector(val_errors=3), None, "likelihood",
                       LikelihoodConfig(min_history=20))
    assert not detection.table["is_anomaly"].any()
    assert detection.notes["a"].startswith("17 of 26 points not scored: fewer than 20 earlier errors")  # 3 validation errors + 17 points


def test_a_series_shorter_than_one_window_is_skipped_with_its_reason():
    detection = detect(_frame([1.0, 2.0, 3.0]), _detector(), None)
    assert detection.table.height == 0 and "not longer than the window (4)" in detection.skipped["a"]
    with pytest.raises(ValueError, match="method must be one of"):
        detect(_frame([1.0] * 10), _detector(), None, "dbscan")


def test_dbscan_flags_the_planted_outliers():
    rng = np.random.default_rng(0)
    errors = np.abs(rng.normal(0, 0.1, (60, 2)))
    outliers = [7, 33, 51]
    errors[outliers] = [[3.0, 2.5], [0.1, 4.0], [5.0, 0.2]]
    labels = dbscan_labels(errors, eps=0.5, min_samples=5)
    assert np.flatnonzero(labels == ANOMALY).tolist() == outliers


def test_reference_errors_give_a_small_partition_its_density():
    rng = np.random.default_rng(1)
    reference = np.abs(rng.normal(0, 0.1, (100, 2)))
    day = np.array([[0.05, 0.1], [0.1, 0.02], [2.0, 2.0]])
    # Alone, three points cannot reach min_samples=5: everything is "anomalous".
    assert (dbscan_labels(day, eps=0.5, min_samples=5) == ANOMALY).all()
    # With the router's held-out errors as reference only the outlier is.
    assert dbscan_labels(day, eps=0.5, min_samples=5, reference=reference).tolist()[2] == ANOMALY
    assert (dbscan_labels(day, eps=0.5, min_samples=5, reference=reference)[:2] != ANOMALY).all()


def test_seed_fallback_marks_a_drifted_series():
    drifted = np.full((30, 2), 6.0) + np.random.default_rng(2).normal(0, 0.05, (30, 2))
    assert (dbscan_labels(drifted, eps=1.0, min_samples=5) != ANOMALY).all()  # one dense cluster, far from 0
    assert (dbscan_labels(drifted, eps=1.0, min_samples=5, fallback_mean_error=4.0) == ANOMALY).all()
    assert (dbscan_labels(drifted * 0.1, eps=1.0, min_samples=5, fallback_mean_error=4.0) != ANOMALY).all()


def test_kdistance_eps_follows_the_noise_level():
    rng = np.random.default_rng(3)
    quiet = np.abs(rng.normal(0, 0.1, (200, 2)))
    eps_quiet, eps_noisy = kdistance_eps(quiet, 5, 0.99), kdistance_eps(quiet * 10, 5, 0.99)
    assert eps_noisy == pytest.approx(10 * eps_quiet)  # distances scale with the errors
    assert 0 < eps_quiet < np.linalg.norm(quiet, axis=1).max()
    with pytest.raises(ValueError, match="too few"):
        kdistance_eps(quiet[:3], 5, 0.99)


def test_weights_without_the_detector_reference_are_refused_by_name(tmp_path):
    from netassets.core.training import save_weights

    path = save_weights(tmp_path / "model.safetensors", EmbedLSTM(ModelConfig(n_routers=1)).state_dict())
    with pytest.raises(ValueError, match="model.safetensors: not an anomaly-likelihood detector's weights"):
        Detector.load(path)
    with pytest.raises(FileNotFoundError, match="materialise device_load_model first"):
        Detector.load(tmp_path / "missing.safetensors")
