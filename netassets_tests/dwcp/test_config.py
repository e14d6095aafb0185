"""Issue 17: every DWCP config value is validated before anything is launched, with a message
naming the field and its allowed range (Dagster builds the step's config before its body runs)."""

from __future__ import annotations

import math

import dagster as dg
import pytest
from pydantic import ValidationError

from netassets.core import torchrun
from netassets.defs.dwcp.assets import BandwidthLSTMConfig, WindowsConfig, dwcp_bandwidth_lstm, dwcp_windows
from netassets.dwcp import runs
from netassets.dwcp.config import TrainConfig

BAD_TRAINING = [
    ("epochs", -1, "greater than or equal to 1"),
    ("epochs", 0, "greater than or equal to 1"),
    ("batch_size", 0, "greater than or equal to 2"),
    ("batch_size", -5, "greater than or equal to 2"),  # used to train and promote
    ("learning_rate", math.nan, "not a finite number; allowed: Adam learning rate, finite, in (0, 1]"),
    ("learning_rate", math.inf, "not a finite number"),
    ("learning_rate", 0.0, "greater than 0"),
    ("learning_rate", 2.0, "less than or equal to 1"),
    ("lstm_sizes", [64, 0, 16], "lstm_sizes: every size must be in [1, 4096]"),  # the guide's hidden_size 0
    ("lstm_sizes", [], "at least 1 item"),
    ("dense_sizes", [8, 8], "at least 3 items"),
    ("dense_sizes", [8, -1, 8], "dense_sizes: every size must be in [1, 4096]"),
    ("dropout", 1.5, "less than 1"),
    ("dropout", math.nan, "not a finite number"),
    ("dense2_dropout", -0.1, "greater than or equal to 0"),
    ("seed", -3, "greater than or equal to 0"),
    ("early_stopping_patience", 0, "greater than or equal to 1"),
    ("lr_patience", -1, "greater than or equal to 0"),
    ("lr_factor", 1.0, "less than 1"),
    ("lr_factor", 0.0, "greater than 0"),
    ("nproc", -2, "greater than or equal to 0"),
]
BAD_WINDOWS = [
    ("window", 0, "greater than or equal to 2"),
    ("horizon_minutes", 0, "greater than or equal to 1"),
    ("horizon_minutes", 100_000, "less than or equal to 1440"),
    ("first_day", "2024-13-01", "first_day='2024-13-01' is not a YYYY-MM-DD day"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_TRAINING + BAD_WINDOWS)
def test_each_bad_value_is_refused_naming_the_field(field, value, message):
    config = BandwidthLSTMConfig if (field, value, message) in BAD_TRAINING else WindowsConfig
    with pytest.raises(ValidationError) as refused:
        config(**{field: value})
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]
    assert field in str(refused.value) and message in str(refused.value)


def test_the_worker_reads_the_same_bounds_from_its_config_file(tmp_path):
    """One parser: the asset's config and the file the worker reads are the same pydantic model."""
    assert set(TrainConfig.model_fields) == set(BandwidthLSTMConfig.model_fields) - {"nproc"}
    path = TrainConfig.of(BandwidthLSTMConfig(epochs=3, lstm_sizes=[4])).write(tmp_path / "config.json")
    assert TrainConfig.read(path).epochs == 3 and TrainConfig.read(path).lstm_sizes == [4]
    path.write_text(path.read_text().replace('"epochs": 3', '"epochs": 0'))
    with pytest.raises(ValueError, match="invalid TrainConfig: epochs: Input should be greater than or equal to 1"):
        TrainConfig.read(path)


def test_the_defaults_and_the_demo_values_are_accepted():
    BandwidthLSTMConfig()
    BandwidthLSTMConfig(epochs=1, batch_size=2, learning_rate=1.0, lstm_sizes=[1], dense_sizes=[1, 1, 1], dropout=0.0,
                        lr_patience=0, nproc=0)
    WindowsConfig(window=2, horizon_minutes=1, first_day="2024-01-01", last_day="2024-01-02")
    with pytest.raises(ValidationError, match="first_day=2024-01-03 is after last_day=2024-01-02"):
        WindowsConfig(first_day="2024-01-03", last_day="2024-01-02")


@pytest.mark.parametrize(("field", "value"), [("epochs", -1), ("batch_size", -5), ("learning_rate", "nan"),
                                              ("lstm_sizes", [0, 8, 8]), ("val_fraction", 1.5)])
def test_a_bad_run_config_fails_before_torchrun_starts(netassets_home, instance, monkeypatch, field, value):
    """Through Dagster, as the Launchpad sends it: the step fails at its config, naming the field;
    no run folder is made and torchrun is never called."""
    launched = []
    monkeypatch.setattr(torchrun, "torchrun_command", lambda *a, **k: launched.append(a) or ["false"])
    value = float(value) if value == "nan" else value
    result = dg.materialize([dwcp_bandwidth_lstm], run_config={"ops": {"dwcp_bandwidth_lstm": {"config": {field: value}}}},
                            instance=instance, raise_on_error=False) if field != "val_fraction" else None
    if result is None:  # an unknown field is refused by Dagster's config schema before any step starts
        with pytest.raises(dg.DagsterInvalidConfigError, match="val_fraction"):
            dg.materialize([dwcp_bandwidth_lstm], run_config={"ops": {"dwcp_bandwidth_lstm": {"config": {field: value}}}},
                           instance=instance)
        return
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data.error)
    assert "validation error for BandwidthLSTMConfig" in text and f"\n{field}\n" in text, text
    assert not launched
    runs_dir = runs.model_store().root / "runs"
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_a_bad_windows_config_fails_before_the_warehouse_is_read(netassets_home, instance):
    result = dg.materialize([dwcp_windows], run_config={"ops": {"dwcp_windows": {"config": {"horizon_minutes": 0}}}},
                            resources={"warehouse": object()}, instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data.error)
    assert "validation error for WindowsConfig" in text and "\nhorizon_minutes\n" in text, text
