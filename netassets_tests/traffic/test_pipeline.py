"""traffic_flows into a real DuckDB file, its GX check, a real torchrun training run split by day
and judged on test, a continued run from its checkpoint, a losing run that is not promoted, a run
that fails mid-training, the landing sensor and the schedules."""

import argparse
import datetime as dt
import json
import logging
import os
import threading

import dagster as dg
import pytest
import torch

from netassets.core.evaluation import Evaluation
from netassets.core.metadata import shown_float
from netassets.core.settings import landing_dir
from netassets.core.training import load_checkpoint
from netassets.defs.traffic.assets import traffic_flows, traffic_lstm
from netassets.defs.traffic.automation import traffic_daily_ingestion_schedule, traffic_landing_sensor
from netassets.defs.traffic.checks import traffic_flows_gx_expectations
from netassets.pipelines import pipeline
from netassets.traffic import sample
from netassets.traffic.runs import model_store

SITES = pipeline("traffic").dynamic.name

DAY, SITE = "2024-01-01", "edge-a"
KEY = f"{DAY}|{SITE}"


def generate(flows=120, sites=SITE, days=1, seed=0):
    return sample.generate(argparse.Namespace(out=None, sites=sites, start=DAY, days=days, flows=flows,
                                              features=8, max_packets=24, seed=seed))


def materialise_flows(warehouse, instance, config=None, with_check=False, key=KEY):
    instance.add_dynamic_partitions(SITES, [SITE])
    return dg.materialize([traffic_flows, *([traffic_flows_gx_expectations] if with_check else [])], partition_key=key,
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
    assert metadata["dagster/row_count"].value == 50 and metadata["features_per_packet"].value == 8
    assert metadata["dagster/table_name"].value.endswith(".main.traffic_flows")
    assert "n_packets" in {c.name for c in metadata["dagster/column_schema"].schema.columns}
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "gx_expectations"
    assert check.passed and check.metadata["rows_validated"].value == 50


def test_a_minified_json_file_passes_the_check_with_every_flow_on_line_one(netassets_home, warehouse, instance):
    """json.dump's default output holds every flow on line 1: (file, line) was the flows' key in the
    blocking check, which failed on valid data and blocked traffic_lstm."""
    import json

    from netassets.core.settings import landing_dir

    folder = landing_dir("traffic") / SITE / DAY
    folder.mkdir(parents=True)
    flows = [{"timestamp": [0.0, 0.01 * i, 0.02 * i], "direction_length": [100, -50, 20 + i]} for i in range(1, 6)]
    (folder / "flows.json").write_text(json.dumps(flows))
    result = materialise_flows(warehouse, instance, with_check=True)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows_validated"].value == 5
    stored = warehouse.read_partition("traffic_flows", {"day": dt.date(2024, 1, 1), "site": SITE})
    assert set(stored["line_no"].to_list()) == {1} and stored["byte_offset"].n_unique() == 5


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
    assert metadata["dagster/row_count"].value == 11 and metadata["skipped_by_reason"].value == {"non_finite": 1}


def test_missing_landing_folder_is_a_clear_error(netassets_home, warehouse, instance):
    with pytest.raises(FileNotFoundError, match=f"no .csv/.json/.jsonl flow files in .*{SITE}/{DAY}"):
        materialise_flows(warehouse, instance)


# enough to beat the baselines on the generated flows: a run with these settings is promoted
SMALL = {"seq_len": 24, "hidden_size": 16, "epochs": 6, "batch_size": 32, "learning_rate": 0.05}


def train(warehouse, instance, config):
    return dg.materialize([traffic_lstm], instance=instance, resources={"warehouse": warehouse},
                          run_config={"ops": {"traffic_lstm": {"config": {**SMALL, **config}}}})


def test_train_by_day_continue_and_refuse_a_losing_model(netassets_home, warehouse, instance):
    days = ["2024-01-01", "2024-01-02", "2024-01-03"]
    generate(flows=40, days=3)
    for day in days:
        materialise_flows(warehouse, instance, key=f"{day}|{SITE}")

    first = train(warehouse, instance, {"nproc": 1})
    store = model_store()
    live = store.production()
    checkpoint = live.path("checkpoint")
    saved = load_checkpoint(checkpoint)
    # the live model is the finished run's best epoch, trained in the run's own folder
    run_dir = store.root / "runs" / first.run_id
    assert live.run_id == first.run_id and checkpoint.parent == store.production().folder
    assert checkpoint.parent.parent == store.root / "production" and checkpoint.parent.name.startswith(first.run_id)
    assert checkpoint.read_bytes() == (run_dir / "checkpoint.pt").read_bytes()
    assert live.path("weights").read_bytes() == (run_dir / "model.safetensors").read_bytes()
    assert live.evaluations[0].beats_strongest_baseline
    metadata = first.asset_materializations_for_node("traffic_lstm")[0].metadata
    # one day each: the last day tests, the one before validates
    assert (metadata["train_flows"].value, metadata["val_flows"].value, metadata["test_flows"].value) == (40, 40, 40)
    assert metadata["evaluation_split"].value.startswith("test: by day partition")
    assert "test 2024-01-03" in metadata["evaluation_split"].value and metadata["evaluation_rows"].value == 40
    evaluation = Evaluation.from_dict(json.loads((run_dir / "report.json").read_text())["evaluation"])
    assert metadata["test_persistence_cos_mean"].value == shown_float(evaluation.scores["persistence (next = current)"]["cos_mean"])
    assert "training mean packet by position" in metadata["evaluation"].value
    assert "| val |" in metadata["validation"].value and "data:image/png" in metadata["test_cosine_by_position"].value
    (check,) = first.get_asset_check_evaluations()
    assert check.check_name == "beats_strongest_baseline" and check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed and metadata["beats_strongest_baseline"].value and metadata["promotion"].value == "promoted"
    assert metadata["test_cos_mean"].value > evaluation.value(evaluation.strongest_baseline)

    live_before = checkpoint.read_bytes()
    second = train(warehouse, instance, {"nproc": 2, "init_from": "resume", "epochs": 2})  # DDP over 2 gloo ranks
    metadata = second.asset_materializations_for_node("traffic_lstm")[0].metadata
    assert metadata["world_size"].value == 2 and metadata["epochs_run"].value == 2
    run_dir = store.root / "runs" / second.run_id
    assert (run_dir / "init_from.pt").read_bytes() == live_before  # every rank started from this copy
    report = json.loads((run_dir / "report.json").read_text())
    assert [h["epoch"] for h in report["history"]][-2:] == [saved["epoch"] + 1, saved["epoch"] + 2]
    # replaced only when an epoch beat the checkpoint it continued from on validation and won on test
    improved = report["best_epoch"] > saved["epoch"]
    assert metadata["live_model_replaced"].value == (improved and report["evaluation"]["beats_strongest_baseline"])
    replaced = metadata["live_model_replaced"].value
    live = store.production()
    assert live.run_id == (second.run_id if replaced else first.run_id)
    checkpoint = live.path("checkpoint")
    assert checkpoint.read_bytes() == ((run_dir / "checkpoint.pt").read_bytes() if replaced else live_before)
    # the continued run normalised with the checkpoint's statistics, not fresh ones
    assert torch.equal(load_checkpoint(checkpoint)["stats"], saved["stats"])

    # a fresh model that cannot learn (learning rate ~0) loses on test: trained, but not promoted
    live_before = checkpoint.read_bytes()
    losing = train(warehouse, instance, {"nproc": 1, "epochs": 1, "learning_rate": 1e-9})
    metadata = losing.asset_materializations_for_node("traffic_lstm")[0].metadata
    assert (store.root / "runs" / losing.run_id / "checkpoint.pt").is_file()
    assert store.candidate().run_id == losing.run_id and store.production().run_id == live.run_id
    assert checkpoint.read_bytes() == live_before and not metadata["live_model_replaced"].value
    assert metadata["promotion"].value.startswith("not promoted: loses: next-packet LSTM cos_mean")
    (check,) = losing.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN and check.description.startswith("loses")
    warnings = [e.user_message for e in instance.all_logs(losing.run_id) if e.level == logging.WARNING]
    assert any(f"the live model {checkpoint} stays as it was: not promoted: loses" in w for w in warnings)

    with pytest.raises(ValueError, match="incompatible with the current config .hidden_size: checkpoint 16 vs config 8"):
        train(warehouse, instance, {"nproc": 1, "init_from": "resume", "hidden_size": 8})


def worker_errors(instance, run):
    """What the torchrun worker raised, as dagster-pipes reported it."""
    events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.is_dagster_event]
    return [e.event_specific_data.error.message for e in events
            if e.is_engine_event and getattr(e.event_specific_data, "error", None)]


def corrupt_once_a_checkpoint_is_saved(models, flow_file, before, stop):
    """Overwrite the flows in place, so that the next epoch reads invalid data, as soon as the
    run saves its first best epoch (a new or replaced checkpoint.pt anywhere under ``models``)."""
    while not stop.wait(0.005):
        if {(p, p.stat().st_ino) for p in models.rglob("checkpoint.pt")} - before:
            garbled = flow_file.read_bytes().translate(bytes.maketrans(b"0123456789", b"xxxxxxxxxx"))
            with flow_file.open("r+b") as handle:  # same inode and size: the worker's mmap sees the new bytes
                handle.write(garbled)
            return


def test_run_failing_mid_training_leaves_the_live_model_alone(netassets_home, warehouse, instance):
    (flow_file,) = generate(flows=90)
    materialise_flows(warehouse, instance)
    train(warehouse, instance, {"nproc": 1})  # a winning run: the live model it leaves
    models = model_store().root
    live = model_store().production().path("checkpoint")
    live_before, original, stat = live.read_bytes(), flow_file.read_bytes(), flow_file.stat()

    before = {(p, p.stat().st_ino) for p in models.rglob("checkpoint.pt")}
    stop = threading.Event()
    corrupter = threading.Thread(target=corrupt_once_a_checkpoint_is_saved, args=(models, flow_file, before, stop))
    corrupter.start()
    try:
        # more epochs than can pass before the corruption lands: the run fails in a later epoch
        with pytest.raises(Exception, match="External execution process failed with code 1"):  # torchrun's exit
            train(warehouse, instance, {"nproc": 1, "init_from": "resume", "epochs": 500, "patience": 500})
    finally:
        stop.set()
        corrupter.join()
    (failed,) = [r for r in instance.get_runs() if r.status == dg.DagsterRunStatus.FAILURE]
    assert any(f"{flow_file}:" in message and "malformed JSON" in message for message in worker_errors(instance, failed))
    assert model_store().production().path("checkpoint") == live and live.read_bytes() == live_before
    failed_run_dir = models / "runs" / failed.run_id
    saved = load_checkpoint(failed_run_dir / "checkpoint.pt")  # the failed run's best epoch, in its own folder
    assert saved["epoch"] > load_checkpoint(live)["epoch"]

    # with the flows repaired, a run continues from the failed run's own checkpoint
    flow_file.write_bytes(original)
    os.utime(flow_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    resumed = train(warehouse, instance, {"nproc": 1, "epochs": 1, "init_from": f"runs/{failed.run_id}/checkpoint.pt"})
    resumed_dir = models / "runs" / resumed.run_id
    assert (resumed_dir / "init_from.pt").read_bytes() == (failed_run_dir / "checkpoint.pt").read_bytes()
    assert json.loads((resumed_dir / "report.json").read_text())["history"][-1]["epoch"] == saved["epoch"] + 1


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

    instance.add_dynamic_partitions(SITES, ["edge-a", "edge-b"])
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2024, 1, 3, 2))
    requests = traffic_daily_ingestion_schedule(context)
    assert sorted(r.partition_key for r in requests) == ["2024-01-02|edge-a", "2024-01-02|edge-b"]


def test_init_from_outside_the_models_folder_is_refused(netassets_home):
    from netassets.core.model_store import ModelStore

    store = ModelStore("traffic", "next_packet_lstm", produced_by="traffic_lstm")
    assert store.inside("runs/abc/checkpoint.pt", "init_from") == (store.root / "runs/abc/checkpoint.pt").resolve()
    for hostile in ("../secret.pt", "/etc/passwd", "runs/../../x.pt"):
        with pytest.raises(ValueError, match="init_from .* must be a path inside"):
            store.inside(hostile, "init_from")


def test_the_demo_prepares_a_home_it_ran_in_before_from_its_own_sample(netassets_home, instance):
    """The second `netassets demo` on a home failed: the generator refuses to overwrite landed files."""
    from contextlib import ExitStack

    from netassets.core.settings import landing_dir

    traffic = pipeline("traffic")
    with ExitStack() as stack:
        first = traffic.prepare_demo(instance, stack)
    landed = {p: p.read_bytes() for p in landing_dir("traffic").rglob("*.csv")}
    with ExitStack() as stack:
        again = traffic.prepare_demo(instance, stack)
    assert again.partition_keys == first.partition_keys and landed
    assert {p: p.read_bytes() for p in landing_dir("traffic").rglob("*.csv")} == landed


@pytest.mark.fault("Ctrl-C during netassets demo")
def test_ctrl_c_stops_the_demo_at_the_run_it_interrupts(tmp_path):
    """Dagster turns SIGINT into a failed step: the demo went on to the next stage and run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "netassets.cli", "demo", "--home", str(tmp_path / "home"),
                                 "traffic"], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "GX_ANALYTICS_ENABLED": "false", "DAGSTER_DISABLE_TELEMETRY": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while "traffic_flows" not in log.read_text():  # the first stage has started
            assert demo.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "netassets: interrupted" in text and "traffic_lstm" not in text, text[-2000:]
