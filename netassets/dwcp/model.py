"""BandwidthLSTM: the guide's architecture.

    [batch, 20, 9] -> LSTM 256 -> BN -> LSTM 128 -> BN -> LSTM 64 -> last step
    -> Dense 128 (ReLU, dropout 0.3, BN) -> Dense 64 (ReLU, dropout 0.21) -> Dense 32 (ReLU) -> 4

Two departures from the seed's code, both towards what the guide draws:
- the seed feeds LSTM 2 and 3 the *last* step of the previous LSTM repeated 20 times; here
  each LSTM reads the whole sequence of the one before it (a stacked LSTM);
- the seed passes ``dropout=0.3`` to single-layer ``nn.LSTM``s, where PyTorch ignores it;
  here the 0.3 dropout is applied between the LSTMs, after batch norm.
"""

from __future__ import annotations

import torch
from torch import nn


class BandwidthLSTM(nn.Module):
    def __init__(
        self,
        n_features: int = 9,
        n_targets: int = 4,
        lstm_sizes: tuple[int, ...] = (256, 128, 64),
        dense_sizes: tuple[int, int, int] = (128, 64, 32),
        dropout: float = 0.3,
        dense2_dropout: float = 0.21,
    ):
        super().__init__()
        if len(dense_sizes) != 3:
            raise ValueError(f"dense_sizes must hold 3 sizes, got {dense_sizes}")
        inputs = (n_features, *lstm_sizes[:-1])
        self.lstms = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in zip(inputs, lstm_sizes))
        # BatchNorm1d normalises channels; between LSTMs it sees (batch, channels, time).
        self.lstm_norms = nn.ModuleList(nn.BatchNorm1d(h) for h in lstm_sizes[:-1])
        self.lstm_dropout = nn.Dropout(dropout)
        d1, d2, d3 = dense_sizes
        self.fc1, self.dropout1, self.bn3 = nn.Linear(lstm_sizes[-1], d1), nn.Dropout(dropout), nn.BatchNorm1d(d1)
        self.fc2, self.dropout2 = nn.Linear(d1, d2), nn.Dropout(dense2_dropout)
        self.fc3 = nn.Linear(d2, d3)
        self.fc_out = nn.Linear(d3, n_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, lstm in enumerate(self.lstms):
            h, _ = lstm(h)
            if i < len(self.lstm_norms):
                h = self.lstm_dropout(self.lstm_norms[i](h.transpose(1, 2)).transpose(1, 2))
        h = h[:, -1]
        h = self.bn3(self.dropout1(torch.relu(self.fc1(h))))
        h = self.dropout2(torch.relu(self.fc2(h)))
        h = torch.relu(self.fc3(h))
        return self.fc_out(h)


def build_model(arch: dict) -> BandwidthLSTM:
    """From the plain dict a checkpoint stores (tuples come back as lists)."""
    return BandwidthLSTM(
        n_features=arch["n_features"], n_targets=arch["n_targets"], lstm_sizes=tuple(arch["lstm_sizes"]),
        dense_sizes=tuple(arch["dense_sizes"]), dropout=arch["dropout"], dense2_dropout=arch["dense2_dropout"],
    )
