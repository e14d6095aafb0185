"""Next-packet model, the seed's normalisations and its masked cosine-similarity metric.

A flow of packets x_1..x_n (each a feature vector) is truncated or zero-padded to
``seq_len``, a zero packet is prepended, and the model reads ``[:-1]`` to predict ``[1:]``:
at step t it has seen x_1..x_t and predicts x_{t+1} (the zero packet lets it predict x_1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NORMALISATIONS = ("l2", "standardise", "minmax")


class NextPacketLSTM(nn.Module):
    """The seed's 1-to-1 LSTM (return sequences) with ReLU, then a linear read-out.

    The seed ends in the ReLU; a linear layer after it lets the model predict the negative
    values that standardised features take.
    """

    def __init__(self, n_features: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, n_features)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(inputs)
        return self.head(torch.relu(hidden))


@dataclass
class FeatureStats:
    """Per-feature count, mean, sum of squared deviations, min, max over packets, built in one
    streaming pass: each chunk is summarised and merged (Chan et al.), which stays exact where
    a running sum of squares would cancel catastrophically on large-valued features."""

    count: int
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray

    @classmethod
    def empty(cls, n_features: int) -> "FeatureStats":
        zeros = np.zeros(n_features)
        return cls(0, zeros, zeros.copy(), np.full(n_features, np.inf), np.full(n_features, -np.inf))

    @classmethod
    def of(cls, packets: np.ndarray) -> "FeatureStats":
        packets = np.asarray(packets, dtype=np.float64)
        mean = packets.mean(axis=0)
        return cls(len(packets), mean, ((packets - mean) ** 2).sum(axis=0), packets.min(axis=0), packets.max(axis=0))

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        return FeatureStats(
            count,
            self.mean + delta * other.count / count,
            self.m2 + other.m2 + delta**2 * self.count * other.count / count,
            np.minimum(self.minimum, other.minimum),
            np.maximum(self.maximum, other.maximum),
        )

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / max(self.count, 1))

    def to_array(self) -> np.ndarray:
        """One float64 row (count, mean, m2, min, max) to all-reduce or save in a checkpoint."""
        return np.concatenate([[self.count], self.mean, self.m2, self.minimum, self.maximum])

    @classmethod
    def from_array(cls, row: np.ndarray) -> "FeatureStats":
        mean, m2, minimum, maximum = np.split(np.asarray(row[1:], dtype=np.float64), 4)
        return cls(int(row[0]), mean, m2, minimum, maximum)


def normaliser(method: str, stats: FeatureStats | None) -> Callable[[np.ndarray], np.ndarray]:
    """The seed's three options. A constant feature (zero spread) is left centred, not divided by 0."""
    if method == "l2":  # each packet scaled to a unit vector, independently of the rest
        return lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; expected one of {NORMALISATIONS}")
    if stats is None or stats.count == 0:
        raise ValueError(f"normalisation {method!r} needs feature statistics from the training flows")
    if method == "standardise":
        shift, scale = stats.mean, np.where(stats.std > 0, stats.std, 1.0)
    else:
        spread = stats.maximum - stats.minimum
        shift, scale = stats.minimum, np.where(spread > 0, spread, 1.0)
    return lambda x: (x - shift) / scale


def make_batch(
    flows: list[np.ndarray], seq_len: int, normalise: Callable[[np.ndarray], np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """inputs, targets (batch, seq_len, features) and the mask of real target packets."""
    n_features = flows[0].shape[1]
    sequence = np.zeros((len(flows), seq_len + 1, n_features), dtype=np.float32)
    mask = np.zeros((len(flows), seq_len), dtype=bool)
    for i, packets in enumerate(flows):
        kept = packets[:seq_len]
        sequence[i, 1 : len(kept) + 1] = normalise(kept)  # normalised in float64, stored float32; position 0 stays zero
        mask[i, : len(kept)] = True
    sequence = torch.from_numpy(sequence)
    return sequence[:, :-1], sequence[:, 1:], torch.from_numpy(mask)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over real packets only: padding would otherwise teach the model to predict zeros."""
    per_packet = ((prediction - target) ** 2).mean(dim=-1)
    return (per_packet * mask).sum() / mask.sum().clamp(min=1)


def packet_cosine(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cosine similarity per packet, 0 beyond each flow's true length (and for a zero vector)."""
    return F.cosine_similarity(prediction, target, dim=-1, eps=1e-8) * mask


def flow_cosine(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of each flow over its real packets (the seed's per-flow score)."""
    return packet_cosine(prediction, target, mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def load_model(path) -> tuple[NextPacketLSTM, FeatureStats, str]:
    """A saved model (``model.safetensors`` of a run or of production), ready to predict: the
    LSTM in eval mode, the training statistics and the normalisation it was trained with."""
    import json

    from netassets.core.training import load_weights

    weights, metadata = load_weights(path)
    architecture = json.loads(metadata["architecture"])
    model = NextPacketLSTM(architecture["n_features"], architecture["hidden_size"], architecture["num_layers"])
    model.load_state_dict(weights)
    return model.eval(), FeatureStats.from_array(np.asarray(json.loads(metadata["stats"]))), architecture["normalisation"]
