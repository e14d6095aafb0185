"""Every traffic config value is checked when the run's config is read, before anything is
launched: a bad value fails the step naming the field and its range, torchrun never starts and no
training run folder is created. traffic_flows: skipped flows counted in metadata and a warning,
a file changing while read stores nothing."""

import argparse
import logging
import math

import dagster as dg
import pytest
from pydantic import ValidationError

from netassets.core.settings import artifacts_dir
from netassets.defs.traffic import assets
from netassets.defs.traffic.assets import TrafficFlowsConfig, TrafficLSTMConfig, traffic_flows, traffic_lstm
from netassets.pipelines import pipeline
from netassets.traffic import readers, sample
from netassets.traffic.config import TrainConfig

SITES = pipeline("traffic").dynamic.name


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's error and every cause, as one string."""
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    error, text = failure.step_failure_data.error, ""
    while error is not None:
        text, error = text + error.message, error.cause
    return text

DAYS, SITE = ["2024-01-01", "2024-01-02", "2024-01-03"], "edge-a"

# (config, field named in the message, words of the allowed range)
BAD = [
    ({"epochs": -1}, "epochs", "greater than or equal to 0"),
    ({"epochs": 0}, "epochs must be >= 1 for a model trained from scratch", ""),
    ({"batch_size": 0}, "batch_size", "greater than or equal to 1"),
    ({"batch_size": -5}, "batch_size", "greater than or equal to 1"),
    ({"learning_rate": math.nan}, "learning_rate", "finite number"),
    ({"learning_rate": math.inf}, "learning_rate", "finite number"),
    ({"learning_rate": 0.0}, "learning_rate", "greater than 0"),
    ({"hidden_size": 0}, "hidden_size", "greater than or equal to 1"),
    ({"num_layers": 0}, "num_layers", "greater than or equal to 1"),
    ({"seq_len": 0}, "seq_len", "greater than or equal to 1"),
    ({"patience": 0}, "patience", "greater than or equal to 1"),
    ({"val_fraction": 1.5}, "val_fraction", "less than 1"),
    ({"val_fraction": math.nan}, "val_fraction", "finite number"),
    ({"test_fraction": 0.0}, "test_fraction", "greater than 0"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction must be < 1", ""),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    ({"nproc": -1}, "nproc", "greater than or equal to 0"),
    ({"sites": ["a b"]}, "sites", "invalid site in sites 'a b'"),
    ({"sites": ["edge-a", "edge-a"]}, "sites", "lists a site twice"),
    ({"init_from": "/etc/passwd"}, "init_from", "a path inside the models folder"),
    ({"init_from": "runs/../../x.pt"}, "init_from", "a path inside the models folder"),
    ({"init_from": ""}, "init_from", "at least 1 character"),
]


@pytest.mark.parametrize("config, field, allowed", BAD, ids=[str(b[0]) for b in BAD])
def test_config_refuses_each_bad_value_naming_the_field(config, field, allowed):
    with pytest.raises(ValidationError) as error:
        TrafficLSTMConfig(**config)
    assert field in str(error.value) and allowed in str(error.value)


def test_every_numeric_field_has_a_range():
    for name, info in TrafficLSTMConfig.model_fields.items():
        if info.annotation in (int, float):
            assert info.metadata and info.description, f"{name} has no range or description"
    for config in (TrafficLSTMConfig, TrafficFlowsConfig):
        assert all(info.description for info in config.model_fields.values()), config


def test_the_asset_config_is_the_training_config_plus_asset_only_fields():
    assert set(TrafficLSTMConfig.model_fields) - set(TrainConfig.model_fields) == {"sites", "init_from", "nproc"}
    config = TrafficLSTMConfig(epochs=3, hidden_size=7, nproc=2)
    assert TrainConfig.of(config) == TrainConfig(epochs=3, hidden_size=7)
    with pytest.raises(ValidationError, match="val_fraction \\+ test_fraction must be < 1"):
        TrainConfig(val_fraction=0.6, test_fraction=0.4)


def test_bad_config_fails_before_torchrun_and_creates_no_run_folder(netassets_home, warehouse, monkeypatch):
    sample.generate(argparse.Namespace(out=None, sites=SITE, start=DAYS[0], days=3, flows=6, features=4,
                                       max_packets=6, seed=0))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SITES, [SITE])
    for day in DAYS:
        assert dg.materialize([traffic_flows], partition_key=f"{day}|{SITE}", instance=instance,
                              resources={"warehouse": warehouse}).success
    launched = []

    def no_torchrun(*args, **kwargs):
        launched.append(args)
        raise RuntimeError("torchrun launched")

    monkeypatch.setattr(assets, "launch_torchrun", no_torchrun)
    models = artifacts_dir("traffic")  # the model store's folder: not even created

    def train(config):
        return dg.materialize([traffic_lstm], instance=instance, resources={"warehouse": warehouse},
                              raise_on_error=False, run_config={"ops": {"traffic_lstm": {"config": config}}})

    for config, field, allowed in [*BAD, ({"init_from": "resume"}, "init_from 'resume'", "checkpoint to continue from not found"),
                                   ({"init_from": "runs/x/checkpoint.pt"}, "init_from", "not found")]:
        result = train(config)
        assert not result.success, config
        message = failure_message(result)
        assert field in message and allowed in message, (config, message[:600])
        assert launched == [] and not models.exists(), config
    # the control: a good config does reach torchrun (here: the stand-in that refuses)
    result = train({"epochs": 1})
    assert not result.success and "torchrun launched" in failure_message(result) and len(launched) == 1


def test_skip_bad_flows_must_be_a_bool():
    with pytest.raises(ValidationError, match="skip_bad_flows"):
        TrafficFlowsConfig(skip_bad_flows="yes")


def test_skipped_flows_are_counted_in_metadata_and_a_warning(netassets_home, warehouse):
    (path,) = sample.generate(argparse.Namespace(out=None, sites=SITE, start=DAYS[0], days=1, flows=5, features=4,
                                                 max_packets=6, seed=0))
    bad = path.parent / "bad.jsonl"
    bad.write_bytes(b"\x00\x00junk\n" + b"\xff" * 300 + b"\n" + b'{"timestamp": [NaN], "direction_length": [1]}\n')
    (path.parent / "packed.csv").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 50)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SITES, [SITE])
    result = dg.materialize([traffic_flows], partition_key=f"{DAYS[0]}|{SITE}", instance=instance,
                            resources={"warehouse": warehouse},
                            run_config={"ops": {"traffic_flows": {"config": {"skip_bad_flows": True}}}})
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("traffic_flows")[0].metadata.items()}
    assert metadata["dagster/row_count"] == 5 and metadata["skipped_flows"] == 4
    assert metadata["skipped_by_reason"] == {"nul_byte": 1, "invalid_utf8": 1, "non_finite": 1, "compressed_file": 1}
    examples = metadata["skipped_examples"]
    for where in (f"{bad}:1: NUL byte", f"{bad}:2: invalid UTF-8", f"{bad}:3: non-finite", f"{path.parent / 'packed.csv'}:1: gzip"):
        assert where in examples
    assert "\\xff" * 11 not in examples  # a short excerpt, not 300 bytes
    (warning,) = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert warning.startswith("skipped 4 bad flows (1 compressed_file, 1 invalid_utf8, 1 non_finite, 1 nul_byte); first 4: ")
    assert f"{bad}:1: NUL byte" in warning and len(warning) < 1500


def test_file_changing_while_read_stores_nothing(netassets_home, warehouse, monkeypatch):
    (path,) = sample.generate(argparse.Namespace(out=None, sites=SITE, start=DAYS[0], days=1, flows=5, features=4,
                                                 max_packets=6, seed=0))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SITES, [SITE])
    key = {"day": readers.dt.date(2024, 1, 1), "site": SITE}

    def materialise():
        return dg.materialize([traffic_flows], partition_key=f"{DAYS[0]}|{SITE}", instance=instance,
                              resources={"warehouse": warehouse}, raise_on_error=False)

    assert materialise().success
    before = warehouse.read_partition("traffic_flows", key, order_by="line_no")
    real_read = readers.FlowFile.read

    def read_while_growing(self, record):
        if record.line == 3:
            with path.open("ab") as handle:
                handle.write(b"[1,2,3,4]\n")
        return real_read(self, record)

    monkeypatch.setattr(readers.FlowFile, "read", read_while_growing)
    result = materialise()
    assert not result.success and f"{path}: changed while it was read" in failure_message(result)
    assert warehouse.read_partition("traffic_flows", key, order_by="line_no").equals(before)
