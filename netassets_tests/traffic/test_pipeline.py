"""traffic_flows into a real DuckDB file, its GX check, a real torchrun training run and a
continued run from its checkpoint, the landing sensor and the schedules."""

import argparse
import datetime as dt
import json

import dagster as dg
import pytest
import torch

from netassets.core.settings import artifacts_dir, landing_dir
from netassets.core.training import load_checkpoint
from netassets.traffic import sample
from netassets.traffic.assets import traffic_flows, traffic_lstm
from netassets.traffic.checks import traffic_flows_valid
from netassets.traffic.definitions import traffic_daily_ingestion, traffic_landing_sensor

DAY, SITE = "2024-01-01", "edge-a"
KEY = f"{DAY}|{SITE}"


def generate(flows=120, sites=SITE, days=1, seed=0):
    return sample.generate(argparse.Namespace(out=None, sites=sites, start=DAY, days=days, flows=flows,
                                              features=8, max_packets=24, seed=seed))


def materialise_flows(warehouse, instance, config=None, with_check=False):
    instance.add_dynamic_partitions("traffic_sites", [SITE])
    return dg.materialize([traffic_flows, *([traffic_flows_valid] if with_check else [])], partition_key=KEY,
                          instance=instance, resources={"warehouse": warehouse},
                          run_config={"ops": {"traffic_flows": {"config": config or {}}}})


def test_traffic_flows_partition_is_replaced_not_duplicated(netassets_home, warehouse, instance):
    (path,) = generate(flows=50)
    lines = path.read_text().splitlines()
    for _ in range(2):
        result = materialise_flows(warehouse, instance, with_check=True)
    assert result.success
    stored = warehouse.read_partition("traffic_flows", {"day": dt.date(2024, 1, 1), "site": SITE}, order_by="line_no")
    assert stored["line_no"].to_list() == list(range(1, 51))
    assert stored["n_packets"].to_list() == [line.count("],[") + 1 for line in lines]
    metadata = result.asset_materializations_for_node("traffic_flows")[0].metadata
    assert metadata["flows"].value == 50 and metadata["features_per_packet"].value == 8
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows_validated"].value == 50


def test_bad_flow_fails_the_partition_or_is_skipped_and_counted(netassets_home, warehouse, instance):
    (path,) = generate(flows=10)
    materialise_flows(warehouse, instance)
    bad = path.parent / "late.csv"
    bad.write_text("[1,2,3,4,5,6,7,8]\n[1,2,3,4,5,6,7,NaN]\n")
    with pytest.raises(ValueError, match=rf"{bad}:2: non-finite value nan at packet 1, feature 8"):
        materialise_flows(warehouse, instance)
    # the failed run left the previous version of the partition in place
    assert len(warehouse.read_partition("traffic_flows", {"day": dt.date(2024, 1, 1), "site": SITE})) == 10
    result = materialise_flows(warehouse, instance, config={"skip_bad_flows": True})
    metadata = result.asset_materializations_for_node("traffic_flows")[0].metadata
    assert metadata["flows"].value == 11 and metadata["skipped_by_reason"].value == {"non_finite": 1}


def test_missing_landing_folder_is_a_clear_error(netassets_home, warehouse, instance):
    with pytest.raises(FileNotFoundError, match=f"no .csv/.json/.jsonl flow files in .*{SITE}/{DAY}"):
        materialise_flows(warehouse, instance)


def test_train_then_continue_from_checkpoint(netassets_home, warehouse, instance):
    generate(flows=90)
    materialise_flows(warehouse, instance)
    small = {"seq_len": 24, "hidden_size": 16, "epochs": 2, "batch_size": 32, "learning_rate": 0.02}

    def train(config):
        return dg.materialize([traffic_lstm], instance=instance, resources={"warehouse": warehouse},
                              run_config={"ops": {"traffic_lstm": {"config": {**small, **config}}}})

    first = train({"nproc": 1})
    checkpoint = artifacts_dir("traffic") / "checkpoint.pt"
    saved = load_checkpoint(checkpoint)
    metadata = first.asset_materializations_for_node("traffic_lstm")[0].metadata
    assert metadata["train_flows"].value + metadata["val_flows"].value == 90
    assert -1 <= metadata["persistence_cos_mean"].value <= 1
    assert "persistence" in metadata["scores"].value and "data:image/png" in metadata["cosine_by_position"].value
    (check,) = first.get_asset_check_evaluations()
    assert check.passed == (metadata["val_cos_mean"].value > metadata["persistence_cos_mean"].value)

    second = train({"nproc": 2, "init_from": "resume"})  # DDP over 2 gloo ranks this time
    metadata = second.asset_materializations_for_node("traffic_lstm")[0].metadata
    assert metadata["world_size"].value == 2 and metadata["epochs_run"].value == 2
    report = json.loads((artifacts_dir("traffic") / "runs" / second.run_id / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]][-2:] == [saved["epoch"] + 1, saved["epoch"] + 2]
    # the continued run normalised with the checkpoint's statistics, not fresh ones
    assert torch.equal(load_checkpoint(checkpoint)["stats"], saved["stats"])

    with pytest.raises(ValueError, match="incompatible with the current config .hidden_size: checkpoint 16 vs config 8"):
        train({"nproc": 1, "init_from": "resume", "hidden_size": 8})


def test_landing_sensor_and_daily_schedule(netassets_home, instance):
    generate(flows=5, sites="edge-a,edge-b", days=2)
    (landing_dir("traffic") / "bad site" / DAY).mkdir(parents=True)
    (landing_dir("traffic") / "bad site" / DAY / "x.csv").write_text("[1]\n")
    result = traffic_landing_sensor(dg.build_sensor_context(instance=instance))
    assert sorted(r.partition_key for r in result.run_requests) == [
        "2024-01-01|edge-a", "2024-01-01|edge-b", "2024-01-02|edge-a", "2024-01-02|edge-b"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["edge-a", "edge-b"]
    again = traffic_landing_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert isinstance(again, dg.SkipReason)  # nothing changed since the cursor

    instance.add_dynamic_partitions("traffic_sites", ["edge-a", "edge-b"])
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2024, 1, 3, 2))
    requests = traffic_daily_ingestion(context)
    assert sorted(r.partition_key for r in requests) == ["2024-01-02|edge-a", "2024-01-02|edge-b"]
