"""The training worker run in this process: it scores the test flows once, next to the baselines
on exactly those flows, refuses an index without a usable split, and unmaps the raw flow files
when it ends, whether training finished or failed (a Dagster code server or a notebook outlives
many runs)."""

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from netassets.core.training import load_checkpoint
from netassets.traffic import sample, train
from netassets.traffic.config import TrainConfig
from netassets.traffic.model import FeatureStats, flow_cosine, load_model, make_batch, normaliser
from netassets.traffic.readers import index_files
from netassets.traffic.split import assign_splits

MAPS = Path("/proc/self/maps")
pytestmark = pytest.mark.skipif(not MAPS.is_file(), reason="needs /proc/self/maps to see this process's mappings")


def mapped(paths):
    """The files among ``paths`` this process has memory-mapped."""
    maps = MAPS.read_text()
    return [p for p in paths if str(p.resolve()) in maps]


@pytest.fixture
def landing(tmp_path, netassets_home):  # the worker's packet caches go under NETASSETS_HOME
    sample.generate(argparse.Namespace(out=tmp_path / "landing", sites="s1,s2", start="2024-01-01", days=1,
                                       flows=30, features=4, max_packets=12, seed=0))
    return tmp_path / "landing"


@pytest.fixture
def flow_files(landing):
    return sorted(landing.rglob("*.csv"))


@pytest.fixture
def index(landing, flow_files):
    frame = index_files(flow_files, landing).frame
    sites = [Path(name).parts[0] for name in frame["source_file"]]
    return assign_splits(frame.with_columns(day=pl.lit(dt.date(2024, 1, 1)), site=pl.Series(sites)), 0.2, 0.2)[0]


@pytest.fixture
def torch_threads():
    threads = torch.get_num_threads()  # the worker sets its own count; give the test process back its own
    yield
    torch.set_num_threads(threads)


def test_flows_unmaps_files_on_exit(index, landing, flow_files):
    with train.Flows(index, landing) as flows:
        assert flows[len(flows) - 1].shape[1] == 4
        assert mapped(flow_files) == flow_files
    assert mapped(flow_files) == []
    with pytest.raises(ValueError, match="closed"):
        flows[0]


def test_flows_unmaps_files_opened_before_one_that_changed(index, landing, flow_files):
    flow_files[-1].write_bytes(flow_files[-1].read_bytes() + b"[1,2,3,4]\n")  # the last file in index order
    with pytest.raises(RuntimeError, match=f"{flow_files[-1]} changed since it was indexed") as error:
        train.Flows(index, landing)
    # the traceback keeps the half-built Flows alive: only closing unmaps the first file
    assert error.traceback and mapped(flow_files) == []


def worker_args(tmp_path, landing, index, init_from=None, **overrides):
    """The worker's command line as the asset builds it: its TrainConfig in a config.json, plus paths."""
    index.write_parquet(tmp_path / "flows.parquet")
    TrainConfig(**{"seq_len": 12, "hidden_size": 8, "epochs": 1, "batch_size": 16, **overrides}).write(tmp_path / "config.json")
    args = {"config": tmp_path / "config.json", "flows": tmp_path / "flows.parquet", "landing": landing,
            "checkpoint": tmp_path / "run" / "checkpoint.pt", "weights": tmp_path / "run" / "model.safetensors",
            "report": tmp_path / "report.json", **({"init_from": init_from} if init_from else {})}
    return [f"--{k}={v}" for k, v in args.items()]


def test_worker_unmaps_flow_files_after_training(tmp_path, landing, index, flow_files, torch_threads):
    train.main(worker_args(tmp_path, landing, index))
    assert json.loads((tmp_path / "report.json").read_text())["flows"]["train"] > 0
    assert mapped(flow_files) == []


def test_worker_unmaps_flow_files_when_training_fails(tmp_path, landing, index, flow_files, torch_threads):
    missing = tmp_path / "no_such_checkpoint.pt"  # loaded after the flow files are opened
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint.pt") as error:
        train.main(worker_args(tmp_path, landing, index, init_from=missing))
    # the traceback keeps the worker's frame, and its Flows, alive: only closing unmaps the files
    assert error.traceback and mapped(flow_files) == []


def test_test_flows_are_scored_once_next_to_baselines_on_the_same_flows(tmp_path, landing, index, torch_threads):
    train.main(worker_args(tmp_path, landing, index, epochs=2))
    report = json.loads((tmp_path / "report.json").read_text())
    test_rows = np.flatnonzero(index["split"].to_numpy() == "test")
    evaluation = report["evaluation"]
    assert evaluation["split"] == "test" and evaluation["rows"] == len(test_rows) == report["flows"]["test"]
    assert set(evaluation["scores"]) == {train.MODEL, train.PERSISTENCE, train.TYPICAL, train.TYPICAL_START}
    # persistence recomputed here from the test flows alone, with the statistics the run saved
    stats = FeatureStats.from_array(load_checkpoint(tmp_path / "run" / "checkpoint.pt")["stats"].numpy())
    with train.Flows(index, landing) as flows:
        inputs, targets, mask = make_batch([flows[i] for i in test_rows], 12, normaliser("standardise", stats))
    persistence = flow_cosine(inputs, targets, mask).numpy()
    scores = evaluation["scores"][train.PERSISTENCE]
    assert scores["cos_mean"] == pytest.approx(persistence.mean(), abs=1e-6)
    assert scores["cos_median"] == pytest.approx(np.median(persistence), abs=1e-6)
    # the same, but packet 1 predicted by the typical first packet: differs only there, and wins there
    start = evaluation["scores"][train.TYPICAL_START]
    assert scores["cos_first_packet"] == 0 and start["cos_first_packet"] > 0
    assert start["cos_first_packet"] == pytest.approx(evaluation["scores"][train.TYPICAL]["cos_first_packet"])
    # the model's test score is its best (validation-chosen) epoch's, not the last epoch's
    assert report["best_epoch"] == min(report["history"], key=lambda h: h["val_mse"])["epoch"]
    # the safetensors weights are that epoch's model, with the statistics it normalised with
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    model, saved_stats, normalisation = load_model(tmp_path / "run" / "model.safetensors")
    assert checkpoint["epoch"] == report["best_epoch"] and normalisation == "standardise"
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint["model"].items())
    np.testing.assert_array_equal(saved_stats.to_array(), stats.to_array())


def test_a_config_file_with_a_bad_value_is_refused_naming_the_field(tmp_path, landing, index):
    args = worker_args(tmp_path, landing, index)
    (tmp_path / "config.json").write_text('{"epochs": 1, "batch_size": 0}')
    with pytest.raises(ValueError, match="invalid TrainConfig.*batch_size"):
        train.main(args)
    (tmp_path / "config.json").write_text('{"epochs": 1, "epoch": 2}')
    with pytest.raises(ValueError, match="epoch"):
        train.main(args)


@pytest.mark.parametrize("broken, message", [
    (lambda index: index.drop("split"), "no 'split' column"),
    (lambda index: index.with_columns(split=pl.lit("train")), "0 val, 0 test flows; every split needs at least one"),
    (lambda index: index.with_columns(split=pl.lit("holdout")), r"unknown split values \['holdout'\]"),
])
def test_an_index_without_a_usable_split_is_refused(tmp_path, landing, index, broken, message, torch_threads):
    with pytest.raises(ValueError, match=message):
        train.main(worker_args(tmp_path, landing, broken(index)))
