"""The next-packet LSTM's training config, written once: the ``traffic_lstm`` asset's config
inherits it, writes it into the run's folder as ``config.json`` and the torchrun worker
(``train.py``) reads that file with the same model. Every value is bounded here, so a bad one
is refused, naming the field and its range, before anything is launched. No torch here."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from netassets.core.config import TrainingConfig


class TrainConfig(TrainingConfig):
    seq_len: int = Field(default=100, ge=1, le=100_000,
                         description="packets per flow the model sees (padded/truncated), 1..100000")
    normalisation: Literal["l2", "standardise", "minmax"] = Field(
        default="standardise", description="per-feature scaling of the packets: l2 (unit length per packet), "
                                           "standardise (training mean and std) or minmax (training range)")
    hidden_size: int = Field(default=128, ge=1, le=8192, description="LSTM hidden units, 1..8192")
    num_layers: int = Field(default=1, ge=1, le=32, description="stacked LSTM layers, 1..32")
    epochs: int = Field(default=10, ge=0, le=100_000, description=(
        "epochs to train, 0..100000 (0 only when continuing: the loaded model is scored as it is)"))
    batch_size: int = Field(default=64, ge=1, le=1_000_000, description="flows per batch, 1..1000000")
    learning_rate: float = Field(default=1e-3, gt=0, le=10, allow_inf_nan=False,
                                 description="Adam learning rate, finite, in (0, 10]")
    patience: int = Field(default=5, ge=1, le=100_000,
                          description="epochs without a validation improvement before stopping, 1..100000")
    val_fraction: float = Field(default=0.15, gt=0, lt=1, allow_inf_nan=False, description=(
        "share of the days (or day x site partitions) that validate, in (0, 1); see traffic/split.py"))
    test_fraction: float = Field(default=0.15, gt=0, lt=1, allow_inf_nan=False, description=(
        "share of the days (or day x site partitions) that test, in (0, 1); see traffic/split.py"))
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="random seed, 0..2**32-1")
    torch_threads: int = Field(default=1, ge=1, le=1024, description="torch CPU threads per torchrun process, 1..1024")

    @model_validator(mode="after")
    def _some_partitions_train(self):
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"val_fraction + test_fraction must be < 1 (some partitions must train), "
                             f"got {self.val_fraction} + {self.test_fraction}")
        return self
