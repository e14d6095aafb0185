"""BandwidthLSTM: the guide's architecture, and DeltaForecaster, the formulation it is trained in.

    [batch, 20, 9] -> LSTM 256 -> BN -> LSTM 128 -> BN -> LSTM 64 -> last step
    -> Dense 128 (ReLU, dropout 0.3, BN) -> Dense 64 (ReLU, dropout 0.21) -> Dense 32 (ReLU) -> 4

Two departures from the seed's code, both towards what the guide draws:
- the seed feeds LSTM 2 and 3 the *last* step of the previous LSTM repeated 20 times; here
  each LSTM reads the whole sequence of the one before it (a stacked LSTM);
- the seed passes ``dropout=0.3`` to single-layer ``nn.LSTM``s, where PyTorch ignores it;
  here the 0.3 dropout is applied between the LSTMs, after batch norm.

DeltaForecaster wraps it, and is what trains, exports and serves:

- the network predicts the *change* from the last observed value, not the level. On 1-step
  throughput series the level is mostly the last value; a network asked for the level spends
  its capacity relearning that, and lost to persistence on the HSDPA traces;
- the change is measured relative to the window's own level (mean |value| of the target in the
  window, floored), as in reversible instance normalisation: journeys, links and hours differ
  in level far more than in shape, and a model of relative changes carries over to a journey
  (or a link) it never saw. The network sees each target's window in those units only (its
  absolute level would let it memorise journeys), next to the other, globally standardised,
  features;
- a linear start, frozen, so the LSTM learns only what a linear model cannot. It blends two
  closed-form ridge fits (train.py fits both, picks the penalties and the per-target blend weight
  on validation and freezes them):
  * relative: an AR model of each target's own relative window (predicts the relative change);
  * absolute: one ridge per target over every feature's standardised window (rtt, cwnd, loss and
    queue depth carry the throughput level with independent noise: a multivariate AR), plus,
    where the windows carry ``time_of_day`` / ``day_of_week``, the hour of the last row one-hot,
    a weekend flag, and each feature's mean over the rows of the last row's hour with a flag for
    "the window crosses an hour" (the generator's level is a step function of the hour). It
    predicts the standardised level.

The network is an ensemble of ``members`` BandwidthLSTMs (different initialisations and dropout
masks, one training loop, each member on its own loss: see ``member_deltas``); the forecast uses
their mean correction. The LSTM's edge over the linear start is small on HSDPA, and a single
network's correction varies with the seed by as much as that edge; the mean varies less.

The mean correction is scaled by ``net_share`` (1 while training; afterwards the share from a
small grid that does best on validation: an average of the trained model and the linear start).
With the network's last layer, both linear paths and the blend at zero, the forecast is exactly
persistence; with the network's last layer at zero it is exactly the frozen linear start.
The "+ last value" and every scaling happen inside the module, so the exported ONNX graph keeps
its contract: standardised inputs in, standardised levels out (``level = output * y_scale + y_mean``).
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


class Ensemble(nn.Module):
    """Several BandwidthLSTMs on the same inputs; the output is their mean."""

    def __init__(self, members: list[BandwidthLSTM]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def each(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's output, [members, batch, targets]."""
        return torch.stack([member(x) for member in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.each(x).mean(dim=0)


class DeltaForecaster(nn.Module):
    """Standardised windows [batch, window, features] -> standardised levels [batch, targets].

    ``scaling`` holds the training split's statistics: x_mean/x_scale (per feature),
    y_mean/y_scale (per target, the output's standardisation), level_floor (per target, the
    smallest window level divided by) and delta_scale (per target, the std of the relative
    change); ``target_index`` says which input feature carries each target.
    """

    SCALING = ("x_mean", "x_scale", "y_mean", "y_scale", "level_floor", "delta_scale")

    def __init__(self, net: Ensemble, window: int, target_index: list[int], scaling: dict,
                 time_index: int = -1, weekday_index: int = -1):
        super().__init__()
        self.net = net
        self.register_buffer("target_index", torch.tensor(target_index, dtype=torch.long))
        others = [i for i in range(len(scaling["x_mean"])) if i not in target_index]
        self.register_buffer("other_index", torch.tensor(others, dtype=torch.long))
        for name in self.SCALING:
            self.register_buffer(name, torch.tensor(scaling[name], dtype=torch.float32))
        self.window = window
        self.time_index, self.weekday_index = time_index, weekday_index  # -1: the windows carry no clock
        n_targets = len(target_index)
        self.linear = nn.Linear(window * n_targets, n_targets)
        self.linear_abs = nn.Linear(absolute_size(window, len(scaling["x_mean"]), time_index, weekday_index), n_targets)
        # Per target: 0 = the relative path only, 1 = the absolute path only (chosen on validation).
        self.register_buffer("blend", torch.zeros(n_targets))
        # The network's share of the forecast (1: all of it; below: averaged with the linear start), chosen on validation.
        self.register_buffer("net_share", torch.ones(()))
        for layer in (self.linear, self.linear_abs, *(member.fc_out for member in net.members)):  # zero: before training, the forecast is persistence
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def targets_of(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(each target's window in original units, its last value, the window's level), from standardised x."""
        index = self.target_index
        raw = x[:, :, index] * self.x_scale[index] + self.x_mean[index]
        return raw, raw[:, -1], torch.maximum(raw.abs().mean(dim=1), self.level_floor)

    def relative_change(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(y - last) / level for targets ``y`` in original units: what ``delta`` predicts, before delta_scale."""
        _, last, level = self.targets_of(x)
        return (y - last) / level

    def relative_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Each target's window relative to the window's level (value / level - 1), [batch, window, targets]."""
        raw, _, level = self.targets_of(x)
        return raw / level[:, None] - 1.0

    def absolute_features(self, x: torch.Tensor) -> torch.Tensor:
        """What the absolute linear path reads: every standardised window, and the clock features."""
        parts = [x.flatten(1)]
        if self.time_index >= 0:
            t = self.time_index
            hour = torch.round(x[:, :, t] * self.x_scale[t] + self.x_mean[t])  # [batch, window]
            last_hour = hour[:, -1:]
            parts.append((last_hour == torch.arange(24, device=x.device, dtype=x.dtype)).to(x.dtype))
            if self.weekday_index >= 0:
                d = self.weekday_index
                weekday = torch.round(x[:, -1, d] * self.x_scale[d] + self.x_mean[d])
                parts.append((weekday >= 5).to(x.dtype)[:, None])
            same = (hour == last_hour).to(x.dtype)  # rows in the last row's hour
            count = same.sum(dim=1, keepdim=True)
            same_mean = (x * same[:, :, None]).sum(dim=1) / count
            crosses = (count < self.window).to(x.dtype)
            parts += [same_mean, same_mean * crosses, crosses]
        return torch.cat(parts, dim=1)

    def linear_start(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen linear forecast as a relative change in units of its training std (what ``delta`` predicts)."""
        relative = self.relative_windows(x)
        _, last, level = self.targets_of(x)
        absolute = self.linear_abs(self.absolute_features(x)) * self.y_scale + self.y_mean
        absolute_delta = (absolute - last) / (level * self.delta_scale)
        return (1 - self.blend) * self.linear(relative.flatten(1)) + self.blend * absolute_delta

    def network_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the network reads: each target's relative window and the other standardised features."""
        relative = self.relative_windows(x)
        return torch.cat([relative, x[:, :, self.other_index]], dim=2) if len(self.other_index) else relative

    def member_deltas(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's forecast relative change, [members, batch, targets]: what training fits, member by member."""
        return self.net_share * self.net.each(self.network_inputs(x)) + self.linear_start(x)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The forecast relative change, in units of its training std (the members' mean)."""
        return self.net_share * self.net(self.network_inputs(x)) + self.linear_start(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last, level = self.targets_of(x)
        forecast = last + self.delta(x) * self.delta_scale * level
        return (forecast - self.y_mean) / self.y_scale


def build_network(arch: dict) -> Ensemble:
    """From the plain dict a checkpoint stores (tuples come back as lists; no ``members``: one network)."""
    return Ensemble([BandwidthLSTM(
        n_features=arch["n_features"], n_targets=arch["n_targets"], lstm_sizes=tuple(arch["lstm_sizes"]),
        dense_sizes=tuple(arch["dense_sizes"]), dropout=arch["dropout"], dense2_dropout=arch["dense2_dropout"],
    ) for _ in range(arch.get("members", 1))])


def build_model(arch: dict, scaling: dict) -> DeltaForecaster:
    """The forecaster a checkpoint describes: its architecture dict and its scaler statistics."""
    return DeltaForecaster(build_network(arch), arch["window"], arch["target_index"], scaling,
                           arch.get("time_index", -1), arch.get("weekday_index", -1))


def absolute_size(window: int, n_features: int, time_index: int, weekday_index: int) -> int:
    """Inputs of the absolute linear path (see ``DeltaForecaster.absolute_features``)."""
    if time_index < 0:
        return window * n_features
    return window * n_features + 24 + (weekday_index >= 0) + 2 * n_features + 1
