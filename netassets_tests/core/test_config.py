"""One training config per trainer: the asset's dg.Config inherits it, workers read one JSON file."""

from __future__ import annotations

import dagster as dg
import pytest
from pydantic import Field, ValidationError

from netassets.core.config import TrainingConfig


class TrainConfig(TrainingConfig):
    epochs: int = Field(3, ge=1, le=100, description="passes over the training windows")
    shuffle: bool = Field(True, description="shuffle every epoch")


class RunConfig(TrainConfig, dg.Config):
    nproc: int = Field(1, ge=1, description="torchrun processes")


def test_asset_config_round_trips_through_the_worker_file(tmp_path):
    config = RunConfig(epochs=7, shuffle=False, nproc=2)
    path = TrainConfig.of(config).write(tmp_path / "config.json")
    read = TrainConfig.read(path)
    assert read == TrainConfig(epochs=7, shuffle=False)
    assert not read.shuffle  # a bool stays a bool: no "False" read as True


def test_worker_file_is_bounded_by_the_same_model(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"epochs": 0, "shuffle": true}')
    with pytest.raises(ValueError, match=r"config.json: invalid TrainConfig.*epochs"):
        TrainConfig.read(path)
    path.write_text('{"epochs": 2, "typo": 1}')
    with pytest.raises(ValueError, match="typo"):
        TrainConfig.read(path)


def test_launchpad_sees_the_descriptions_and_bounds():
    with pytest.raises(ValidationError):
        RunConfig(epochs=101)
    schema = RunConfig.model_json_schema()["properties"]
    assert schema["epochs"]["description"] == "passes over the training windows"
    assert schema["nproc"]["description"] == "torchrun processes"
