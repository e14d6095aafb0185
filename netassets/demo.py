"""`netassets demo`: sample data for every pipeline, materialised end to end with its checks.

Uses the embedded default: a DuckDB file under NETASSETS_HOME and a Dagster instance under
$NETASSETS_HOME/dagster_home (unless DAGSTER_HOME is set), so `dagster dev` afterwards shows
every run, materialisation and check result. perfSONAR runs against an osmem-server (a real
OpenSearch-compatible server) that the demo starts, seeds and stops.

Each pipeline goes through stages: ingest every landed partition, train its models on them
(small configs: this is a demo, benchmarks train at full size), then score a partition.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dagster as dg

from netassets.core.settings import REPO_ROOT, netassets_home


@dataclass
class Stage:
    selection: list[str]  # asset keys; their checks run with them
    partitions: Callable[[], list[str | None]] = lambda: [None]
    run_config: dict = field(default_factory=dict)


@dataclass
class Pipeline:
    name: str
    prepare: Callable[[dg.DagsterInstance, ExitStack], None]  # sample data, partitions, servers
    stages: list[Stage]


def _cli(module: str, *argv: str):
    """Run a pipeline's generator exactly as `netassets generate` would."""
    sample = importlib.import_module(module)
    parser = argparse.ArgumentParser()
    sample.add_arguments(parser)
    return sample.generate(parser.parse_args(list(argv)))


def _landed(pipeline: str) -> Callable[[], list[str]]:
    def keys() -> list[str]:
        from netassets.cli import LANDING_SCANS

        module, scan, _ = LANDING_SCANS[pipeline]
        return sorted(f"{day}|{other}" for day, other in getattr(importlib.import_module(module), scan)())

    return keys


def _register(instance: dg.DagsterInstance, pipeline: str) -> None:
    from netassets.cli import LANDING_SCANS

    dynamic = LANDING_SCANS[pipeline][2]
    instance.add_dynamic_partitions(dynamic, sorted({key.split("|")[1] for key in _landed(pipeline)()}))


def _prepare_generated(pipeline: str, module: str, *argv: str):
    def prepare(instance: dg.DagsterInstance, _: ExitStack) -> None:
        _cli(module, *argv)
        _register(instance, pipeline)

    return prepare


_perfsonar_keys: list[str] = []
_perfsonar_configs: dict[str, dict] = {}


def _prepare_perfsonar(instance: dg.DagsterInstance, stack: ExitStack) -> None:
    from netassets.perfsonar.sample import start_demo_server_and_seed

    cluster = start_demo_server_and_seed(dt.date.today() - dt.timedelta(days=1))
    stack.callback(cluster.server.close)
    instance.add_dynamic_partitions("perfsonar_sources", cluster.sources)
    _perfsonar_keys[:] = cluster.partition_keys
    _perfsonar_configs.update(cluster.run_configs)


PIPELINES = [
    Pipeline(
        "lens",
        _prepare_generated("lens", "netassets.lens.sample", "--days", "3", "--regions", "chicago,ottawa", "--hours", "1"),
        [
            Stage(["lens_raw_irtt", "lens_clean_groups", "lens_group_features"], _landed("lens")),
            Stage(
                ["lens_gmm", "lens_patchtst", "lens_patchtst_production"],
                run_config={"ops": {"lens_patchtst": {"config": {
                    "channels": "nearest", "epochs": 20, "batch_size": 32, "lr": 0.01, "d_model": 32,
                    "num_attention_heads": 2, "num_hidden_layers": 1, "ffn_dim": 64, "patch_length": 10}}}},
            ),
            Stage(["lens_clusters"], _landed("lens")),
        ],
    ),
    Pipeline(
        "device_load",
        _prepare_generated("device_load", "netassets.device_load.sample", "--days", "7", "--regions", "nl,be"),
        [
            Stage(["device_load_raw", "device_load_features"], _landed("device_load")),
            Stage(["device_load_windows", "device_load_model"], run_config={"ops": {"device_load_model": {"config": {"epochs": 3}}}}),
            Stage(["device_load_anomalies"], lambda: _landed("device_load")()[-1:]),
        ],
    ),
    Pipeline(
        "dwcp",
        _prepare_generated("dwcp", "netassets.dwcp.sample", "--days", "2", "--regions", "us-east-1,eu-west-1", "--links", "2"),
        [
            Stage(["dwcp_raw"], _landed("dwcp")),
            Stage(
                ["dwcp_windows", "dwcp_bandwidth_lstm", "dwcp_report", "dwcp_onnx", "dwcp_onnx_production"],
                run_config={"ops": {"dwcp_bandwidth_lstm": {"config": {"epochs": 3}}}},
            ),
        ],
    ),
    Pipeline(
        "traffic",
        _prepare_generated("traffic", "netassets.traffic.sample", "--days", "3", "--flows", "120", "--features", "24"),
        [
            Stage(["traffic_flows"], _landed("traffic")),
            Stage(["traffic_lstm"], run_config={"ops": {"traffic_lstm": {"config": {
                "epochs": 6, "seq_len": 40, "learning_rate": 0.05}}}}),
        ],
    ),
    Pipeline(
        "perfsonar",
        _prepare_perfsonar,
        [
            Stage(["perfsonar_packet_loss"], lambda: list(_perfsonar_keys)),
            Stage(["perfsonar_anomaly_scores", "perfsonar_alarms"], lambda: list(_perfsonar_keys[1:])),
        ],
    ),
]


def _instance_home(home: Path) -> Path:
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster_home")
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def run(args: argparse.Namespace) -> None:
    if args.home:
        os.environ["NETASSETS_HOME"] = str(Path(args.home).expanduser().resolve())
    home = netassets_home()
    home.mkdir(parents=True, exist_ok=True)
    dagster_home = _instance_home(home)
    selected = [p for p in PIPELINES if not args.pipelines or p.name in args.pipelines]
    from netassets.definitions import defs

    jobs = {
        (p.name, i): dg.define_asset_job(f"demo_{p.name}_{i}", selection=stage.selection)
        for p in selected for i, stage in enumerate(p.stages)
    }
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=list(jobs.values())))
    failed: list[str] = []
    with dg.DagsterInstance.get() as instance, ExitStack() as stack:
        for pipeline in selected:
            started = time.perf_counter()
            print(f"[{pipeline.name}] preparing sample data", flush=True)
            pipeline.prepare(instance, stack)
            runs = ok = checks = checks_passed = 0
            for i, stage in enumerate(pipeline.stages):
                job = resolved.get_job_def(jobs[(pipeline.name, i)].name)
                for key in stage.partitions():
                    extra_ops = _perfsonar_configs.get(key or "", {}).get("ops", {})
                    ops = {**stage.run_config.get("ops", {}),
                           **{op: cfg for op, cfg in extra_ops.items() if op in stage.selection}}
                    config = {"ops": ops} if ops else None
                    result = job.execute_in_process(
                        partition_key=key, run_config=config, instance=instance, raise_on_error=False
                    )
                    evaluations = result.get_asset_check_evaluations()
                    runs, ok = runs + 1, ok + result.success
                    checks, checks_passed = checks + len(evaluations), checks_passed + sum(e.passed for e in evaluations)
                    if not result.success:
                        print(f"[{pipeline.name}]   run {result.run_id} for {', '.join(stage.selection)} {key or ''} FAILED")
            status = "ok" if ok == runs else "FAILED"
            print(f"[{pipeline.name}] {status}: {ok}/{runs} runs, checks passed {checks_passed}/{checks}, "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
            if ok != runs:
                failed.append(pipeline.name)

    print(
        f"\nwarehouse:  {home / 'warehouse.duckdb'}\n"
        f"landing:    {home / 'landing'}\n"
        f"models:     {home / 'models'}\n"
        f"browse:     DAGSTER_HOME={dagster_home} NETASSETS_HOME={home} dagster dev"
    )
    if failed:
        raise SystemExit(f"demo failed for: {', '.join(failed)}")
