"""The Embed-LSTM training config, one for the asset and the torchrun worker (pydantic only, no torch).

``device_load_model`` inherits it (``TrainingRunConfig(TrainConfig, dg.Config)``, plus ``nproc``),
writes ``TrainConfig.of(config)`` to ``runs/<run id>/config.json`` and starts the worker with
``--config <that file>``; the worker reads it with ``TrainConfig.read``, so a value is parsed
and bounded once.
"""

from __future__ import annotations

from pydantic import Field

from netassets.core.config import TrainingConfig


class TrainConfig(TrainingConfig):
    epochs: int = Field(default=30, ge=1, le=10_000, description="most epochs; early stopping may end sooner")
    batch_size: int = Field(default=64, ge=1, le=65_536, description="windows per optimiser step and process")
    lr: float = Field(default=1e-3, gt=0, le=1, allow_inf_nan=False, description="Adam learning rate")
    lr_factor: float = Field(default=0.5, gt=0, lt=1, allow_inf_nan=False,
                             description="ReduceLROnPlateau factor on the validation MSE")
    lr_patience: int = Field(default=2, ge=0, le=10_000,
                             description="epochs without a better validation MSE before the learning rate drops")
    patience: int = Field(default=5, ge=1, le=10_000,
                          description="epochs without a better validation loss before stopping")
    seed: int = Field(default=0, ge=0, description="random seed of the initialisation and batch order")
    threads: int = Field(default=1, ge=1, le=256, description="torch threads per process")
