"""Normalisation statistics, batch layout and the masked cosine metric on hand-made cases."""

import numpy as np
import pytest
import torch

from netassets.traffic.model import FeatureStats, flow_cosine, make_batch, masked_mse, normaliser, packet_cosine


@pytest.fixture
def flows():
    rng = np.random.default_rng(0)
    # a large offset on feature 0 is where a naive sum of squares loses precision
    return [rng.normal([1e6, 0, 5], [0.5, 1, 3], size=(int(rng.integers(1, 30)), 3)) for _ in range(40)]


def test_streaming_stats_equal_direct_computation(flows):
    # flows split over two "ranks", each merged flow by flow, then the two summaries merged
    rank0, rank1 = FeatureStats.empty(3), FeatureStats.empty(3)
    for i, flow in enumerate(flows):
        if i % 2:
            rank1 = rank1.merge(FeatureStats.of(flow))
        else:
            rank0 = rank0.merge(FeatureStats.of(flow))
    stats = FeatureStats.from_array(rank0.to_array()).merge(FeatureStats.from_array(rank1.to_array()))
    every_packet = np.concatenate(flows)
    assert stats.count == len(every_packet)
    np.testing.assert_allclose(stats.mean, every_packet.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, every_packet.std(axis=0), rtol=1e-9)
    np.testing.assert_array_equal(stats.minimum, every_packet.min(axis=0))
    np.testing.assert_array_equal(stats.maximum, every_packet.max(axis=0))


def test_normalisations(flows):
    every_packet = np.concatenate(flows)
    stats = FeatureStats.of(every_packet)
    standard = normaliser("standardise", stats)(every_packet)
    np.testing.assert_allclose(standard.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(standard.std(axis=0), 1, rtol=1e-6)
    scaled = normaliser("minmax", stats)(every_packet)
    np.testing.assert_allclose(scaled.min(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(scaled.max(axis=0), 1, rtol=1e-12)
    unit = normaliser("l2", None)(every_packet)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, rtol=1e-12)
    constant = FeatureStats.of(np.array([[2.0, 1.0], [2.0, 3.0]]))
    assert normaliser("standardise", constant)(np.array([[2.0, 3.0]])).tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="needs feature statistics"):
        normaliser("minmax", None)


def test_batch_prepends_zero_packet_shifts_and_truncates():
    short = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    long = np.arange(10, dtype=np.float32).reshape(5, 2)
    inputs, targets, mask = make_batch([short, long], seq_len=3, normalise=lambda x: x)
    assert inputs.shape == targets.shape == (2, 3, 2)
    assert inputs[0].tolist() == [[0, 0], [1, 2], [3, 4]]
    assert targets[0].tolist() == [[1, 2], [3, 4], [0, 0]]
    assert inputs[1].tolist() == [[0, 0], [0, 1], [2, 3]]
    assert targets[1].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert mask.tolist() == [[True, True, False], [True, True, True]]


def test_masked_cosine_on_hand_made_flows():
    target = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]],
                           [[1.0, 1.0], [3.0, 0.0], [0.0, 0.0]]])
    prediction = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]],   # cos 1, 0, -1 (masked out)
                               [[-1.0, -1.0], [1.0, 1.0], [9.0, 9.0]]])  # cos -1, 1/sqrt2, padding
    mask = torch.tensor([[True, True, False], [True, True, False]])
    per_packet = packet_cosine(prediction, target, mask)
    np.testing.assert_allclose(per_packet, [[1, 0, 0], [-1, 2**-0.5, 0]], atol=1e-6)
    np.testing.assert_allclose(flow_cosine(prediction, target, mask), [0.5, (-1 + 2**-0.5) / 2], atol=1e-6)
    # the zero start packet as a prediction scores 0, not NaN
    assert packet_cosine(torch.zeros(1, 1, 2), torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool)).item() == 0.0
    # MSE ignores padding: only the 4 real packets count
    expected = np.mean([0.5, 2.5, 4.0, 2.5])
    assert masked_mse(prediction, target, mask).item() == pytest.approx(expected)
