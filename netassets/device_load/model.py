"""The seed's Embed-LSTM in PyTorch: a window of scaled features and a router id -> next (max, mean).

One change to the seed's formulation (``residual``, on by default): the network predicts the
*change* from the window's last (max, mean), and its last layer starts at zero, so an
untrained model is exactly the persistence baseline and training only has to learn what
persistence misses. The seed's direct prediction is ``residual=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    n_routers: int
    n_features: int = 8
    embedding_dim: int = 4
    lstm_hidden: int = 64
    dense_hidden: int = 32
    dropout: float = 0.1
    n_outputs: int = 2
    residual: bool = True  # predict next - last (see the module docstring)


class EmbedLSTM(nn.Module):
    """router -> Embedding(n, 4); window -> LSTM(64), last state; concat -> Dense(32, tanh) -> Dropout -> Dense(2) (+ last value)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.n_routers, config.embedding_dim)
        self.lstm = nn.LSTM(config.n_features, config.lstm_hidden, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(config.lstm_hidden + config.embedding_dim, config.dense_hidden),
            nn.Tanh(),
            nn.Dropout(config.dropout),
            nn.Linear(config.dense_hidden, config.n_outputs),
        )
        if config.residual:
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor, router_id: torch.Tensor) -> torch.Tensor:
        _, (h_last, _) = self.lstm(x)
        out = self.head(torch.cat([h_last[-1], self.embedding(router_id)], dim=1))
        return out + persistence(x) if self.config.residual else out


def persistence(x: torch.Tensor) -> torch.Tensor:
    """Baseline: the next (max, mean) equals the window's last (max, mean)."""
    return x[:, -1, :2]


@torch.no_grad()
def predict(model: EmbedLSTM, x, router_id, batch_size: int = 1024):
    """Scaled predictions for numpy windows, in eval mode, in batches."""
    model.eval()
    out = [
        model(torch.as_tensor(x[i:i + batch_size]), torch.as_tensor(router_id[i:i + batch_size])).numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.config.n_outputs), dtype=np.float32)


def window_mean(x: torch.Tensor) -> torch.Tensor:
    """Baseline: the next (max, mean) equals the window's average (max, mean)."""
    return x[:, :, :2].mean(dim=1)
