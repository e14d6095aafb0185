"""BandwidthLSTM's training config, written once: the ``dwcp_bandwidth_lstm`` asset's config
inherits it and writes it into the run's folder as ``config.json``; the torchrun worker
(``train.py``) reads that file with the same model. Every knob of the guide's training CLI:
--data-path is the run's copy of dwcp_windows' file, --output-dir the run's folder and
--window-size dwcp_windows' ``window``. Every value is bounded here, so a bad one is refused,
naming the field and its allowed range, before torchrun starts. No torch here."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from netassets.core.config import TrainingConfig

MAX_LAYER = 4096


class TrainConfig(TrainingConfig):
    epochs: int = Field(default=150, ge=1, le=100_000, description="training epochs, 1 to 100000")
    batch_size: int = Field(default=64, ge=2, le=1_000_000,
                            description="windows per batch, 2 to 1000000 (batch norm cannot train on one window)")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, allow_inf_nan=False,
                                 description="Adam learning rate, finite, in (0, 1]")
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="random seed, 0 to 2**32-1")
    lstm_sizes: list[int] = Field(default=[256, 128, 64], min_length=1, max_length=8,
                                  description="hidden size of each stacked LSTM, 1 to 8 layers of 1 to 4096 units")
    ensemble_members: int = Field(default=8, ge=1, le=64,
                                  description="BandwidthLSTMs trained side by side (own initialisation, own loss); "
                                              "the forecast uses their mean correction, 1 to 64")
    dense_sizes: list[int] = Field(default=[128, 64, 32], min_length=3, max_length=3,
                                   description="the three dense layers' sizes, each 1 to 4096")
    dropout: float = Field(default=0.3, ge=0, lt=1, allow_inf_nan=False,
                           description="dropout between LSTMs and after dense 1, in [0, 1)")
    dense2_dropout: float = Field(default=0.21, ge=0, lt=1, allow_inf_nan=False,
                                  description="dropout after dense 2, in [0, 1)")
    early_stopping_patience: int = Field(default=15, ge=1, le=100_000,
                                         description="epochs without a better validation score before stopping, >= 1")
    lr_patience: int = Field(default=5, ge=0, le=100_000,
                             description="ReduceLROnPlateau: flat epochs before the rate is cut, >= 0 (the seed: 5)")
    lr_factor: float = Field(default=0.5, gt=0, lt=1, allow_inf_nan=False,
                             description="ReduceLROnPlateau: factor the rate is multiplied by, in (0, 1) (the seed: 0.5)")

    @field_validator("learning_rate", "dropout", "dense2_dropout", "lr_factor", mode="before")
    @classmethod
    def _finite(cls, value, info):
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise ValueError(f"{info.field_name}={value} is not a finite number; allowed: "
                             f"{cls.model_fields[info.field_name].description}")
        return value

    @field_validator("lstm_sizes", "dense_sizes")
    @classmethod
    def _layer_sizes(cls, value: list[int], info) -> list[int]:
        bad = [size for size in value if not 1 <= size <= MAX_LAYER]
        if bad:
            raise ValueError(f"{info.field_name}: every size must be in [1, {MAX_LAYER}], got {value}")
        return value
