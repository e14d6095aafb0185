"""GmmModel.predict_proba: the expanded quadratic form against a direct per-feature computation,
and its memory, which must not hold a (groups, k, features) array."""

from __future__ import annotations

import tracemalloc

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm

from netassets.lens.clustering import GmmModel
from netassets.lens.features import FEATURES


def random_model(rng: np.random.Generator, k: int) -> GmmModel:
    d = len(FEATURES)
    return GmmModel(
        features=list(FEATURES),
        scaler_mean=rng.normal(scale=10, size=d),
        scaler_scale=rng.uniform(0.5, 5, size=d),
        weights=rng.dirichlet(np.ones(k)),
        means=rng.normal(scale=2, size=(k, d)),
        variances=10 ** rng.uniform(-1.5, 1, size=(k, d)),  # tight and loose components side by side
    )


def test_predict_proba_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    model = random_model(rng, k=12)
    d = len(FEATURES)
    # Standardised points on the components, on segments between two of them (where posteriors
    # are mixed), and far out (|z| up to ~60, where the expanded form cancels the most).
    a, b, share = rng.integers(0, model.k, 300), rng.integers(0, model.k, 300), rng.uniform(size=(300, 1))
    z = np.vstack([model.means[rng.integers(0, model.k, 300)] + rng.normal(scale=0.05, size=(300, d)),
                   share * model.means[a] + (1 - share) * model.means[b], rng.normal(scale=20, size=(50, d))])
    features = z * model.scaler_scale + model.scaler_mean
    # Reference: the Gaussian log density of every feature on its own, summed (the (n, k, d) way).
    standardised = model.standardise(features)
    log_joint = np.log(model.weights) + norm.logpdf(
        standardised[:, None, :], model.means, np.sqrt(model.variances)).sum(axis=2)
    expected = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))

    proba = model.predict_proba(features)
    assert (np.sort(expected, axis=1)[:, -2] > 1e-3).sum() >= 50  # rows where components compete
    np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-9)
    labels, probability = model.predict(features)
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    np.testing.assert_allclose(probability, expected.max(axis=1), rtol=0, atol=1e-9)


def test_predict_proba_does_not_allocate_groups_by_components_by_features():
    rng = np.random.default_rng(1)
    model = random_model(rng, k=15)  # k_max of the default selection
    groups = 100_000
    features = rng.normal(size=(groups, len(FEATURES))) * model.scaler_scale + model.scaler_mean
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        model.predict_proba(features)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    one_cube = groups * model.k * len(FEATURES) * 8  # a float64 (groups, k, d) array: 108 MB here
    assert peak < one_cube / 2, f"peak {peak / 2**20:.0f} MiB"
