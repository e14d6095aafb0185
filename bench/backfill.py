"""Per-partition orchestration overhead: a multi-run Dagster backfill vs the same code in one process.

    python -m bench.backfill [--partitions 20] [--max-runs 2] [--out bench/results/backfill.json]

Workload: N small LENS partitions (N days x chicago, one hour file a day at 10 Hz, 36 k rows
each; lens_clean_groups with min_samples 100), each: lens_ingest (lens_raw_irtt +
lens_clean_groups) with its two GX suites, evaluated in the step. Three ways, one after the
other, each into its own DuckDB file:

  direct       in this process: the lens_ingest body called directly with a built context (its
               GX suites included); no runs, no event log
  materialize  in this process: dg.materialize of lens_ingest per partition (in-process executor,
               a temporary sqlite instance with deploy/dagster.yaml's compute-log manager: run +
               event log + captured output, no subprocesses)
  backfill     `dagster dev` (the repository's deploy/dagster.yaml, at most --max-runs runs at once) and a
               multi-run asset backfill through GraphQL: the daemon submits one run per partition;
               each run worker is a fork of the WarmRunLauncher's warm process (code location and
               Great Expectations already imported) and runs its step in process
  backfill_default  the same with Dagster's default run launcher (the baseline): the code server
               spawns each run worker, which imports netassets.definitions and GX afresh (the
               rest of deploy/dagster.yaml, its compute-log manager included, as for backfill)

Reports seconds per partition: wall / N (request to the backfill marked done); for the backfills
also the wall from the first run's creation to the last run's end (the runs themselves, without
Dagster's backfill daemon, which wakes every 30 s: once before the first run, once after the last)
and run-seconds / N (the sum of the runs' own durations: machine time regardless of how many ran
at once). Ratios are against direct.
Checks that all four wrote the same number of clean groups per partition.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from netassets.pipelines import pipeline

REGION = "chicago"
FIRST_DAY = dt.date(2023, 11, 1)
MIN_SAMPLES = 100
RESULTS = Path(__file__).resolve().parent / "results" / "backfill.json"


def keys_for(n: int) -> list[str]:
    return [f"{(FIRST_DAY + dt.timedelta(days=d)).isoformat()}|{REGION}" for d in range(n)]


def clean_rows(database: Path, keys: list[str]) -> dict[str, int]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as conn:
        rows = dict(
            conn.execute(
                "SELECT strftime(day, '%Y-%m-%d') || '|' || region, count(*) FROM lens_clean_groups GROUP BY ALL"
            ).fetchall()
        )
    return {key: int(rows.get(key, 0)) for key in keys}


LENS_ASSETS = ("lens_raw_irtt", "lens_clean_groups")
LENS_RUN_CONFIG = {"ops": {"lens_ingest": {"config": {"min_samples": MIN_SAMPLES}}}}


def dev_homes(root: Path, days: int, max_runs: int, warm: bool = True) -> dict[str, str]:
    """DAGSTER_HOME (the repository's deploy/dagster.yaml with a run limit; ``warm=False``: without its
    WarmRunLauncher, so Dagster's default launcher) and NETASSETS_HOME with the partitions' LENS files;
    the environment for `dagster dev`."""
    import dagster as dg
    import yaml

    from netassets.core.settings import INSTANCE_SETTINGS
    from netassets.lens.sample import write_lens

    dagster_home, netassets_home = root / "dagster_home", root / "netassets_home"
    dagster_home.mkdir(parents=True)
    config = yaml.safe_load(INSTANCE_SETTINGS.read_text())
    config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = max_runs
    if not warm:
        del config["run_launcher"]
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    write_lens(netassets_home / "landing" / "lens", [REGION], FIRST_DAY, days, seed=0, hours=1, rate_hz=10)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        pipeline("lens").register(instance, [REGION])
    env = {k: v for k, v in os.environ.items() if k not in ("NETASSETS_LENS_ROOT", "DAGSTER_HOME")}
    env.update(DAGSTER_HOME=str(dagster_home), NETASSETS_HOME=str(netassets_home), GX_ANALYTICS_ENABLED="false",
               OMP_NUM_THREADS="1", DAGSTER_DISABLE_TELEMETRY="1")
    return env


def method_direct(home: Path, keys: list[str]) -> dict:
    import dagster as dg

    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.defs.lens.assets import LensCleanConfig, lens_ingest

    warehouse = DuckDBWarehouse(database=str(home / "direct.duckdb"))
    with dg.instance_for_test() as instance:
        pipeline("lens").register(instance, [REGION])
        start = time.perf_counter()
        for key in keys:
            context = dg.build_asset_context(partition_key=key, instance=instance)
            results = list(lens_ingest(context=context, config=LensCleanConfig(min_samples=MIN_SAMPLES), warehouse=warehouse))
            checks = [r for r in results if isinstance(r, dg.AssetCheckResult)]  # the GX suites run in the body
            assert len(checks) == 2 and all(c.passed for c in checks), (key, checks)
        seconds = time.perf_counter() - start
    return {"wall_s": seconds, "rows": clean_rows(warehouse.path, keys)}


def method_materialize(home: Path, keys: list[str]) -> dict:
    import dagster as dg

    from netassets.core.settings import instance_setting
    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.defs.lens.assets import lens_ingest

    warehouse = DuckDBWarehouse(database=str(home / "materialize.duckdb"))
    run_config = {
        "ops": {"lens_ingest": {"config": {"min_samples": MIN_SAMPLES}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    with dg.instance_for_test(overrides={"compute_logs": instance_setting("compute_logs")}) as instance:
        pipeline("lens").register(instance, [REGION])
        start = time.perf_counter()
        for key in keys:
            result = dg.materialize(
                [lens_ingest],
                partition_key=key,
                instance=instance,
                resources={"warehouse": warehouse},
                run_config=run_config,
            )
            assert result.success, key
            evaluations = result.get_asset_check_evaluations()
            assert len(evaluations) == 2 and all(e.passed for e in evaluations), (key, evaluations)
        seconds = time.perf_counter() - start
    return {"wall_s": seconds, "rows": clean_rows(warehouse.path, keys)}


def method_backfill(root: Path, keys: list[str], max_runs: int, warm: bool) -> dict:
    from netassets.devserver import DagsterDev

    server = DagsterDev.launch(root, dev_homes(root, len(keys), max_runs, warm)).wait_ready(timeout_s=300)
    try:
        start = time.perf_counter()
        launched_at = time.time()
        backfill_id = server.launch_backfill(keys, assets=LENS_ASSETS, run_config=LENS_RUN_CONFIG)
        status, runs = server.wait_backfill(backfill_id, expected_runs=len(keys), timeout_s=1500)
        seconds = time.perf_counter() - start
    finally:
        server.stop()
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    if failed or sorted(r["partition"] for r in runs) != sorted(keys):
        raise RuntimeError(f"backfill {backfill_id} ({status}): failed or missing runs {failed}\n{server.log_tail()}")
    runs_done_s = max(r["endTime"] for r in runs) - launched_at
    phases = run_phases(Path(server.env["DAGSTER_HOME"]), [r["runId"] for r in runs])
    return {
        "wall_s": seconds,
        "runs_done_s": runs_done_s,
        "backfill_status": status,
        "server_start_s": server.started_s,
        # From the first run's creation to the last run's end: the backfill's runs without the wait
        # for Dagster's backfill daemon, which looks at new and finished backfills every 30 s
        # (hard-coded: dagster/_daemon/backfill.py), once before the first run and once after the last.
        "runs_wall_s": max(r["endTime"] for r in runs) - min(r["creationTime"] for r in runs),
        "run_s_sum": sum(r["endTime"] - r["startTime"] for r in runs),
        "run_s_mean": sum(r["endTime"] - r["startTime"] for r in runs) / len(runs),
        "queue_to_start_s_mean": sum(r["startTime"] - r["creationTime"] for r in runs) / len(runs),
        "max_concurrent_runs": max_runs,
        "run_phase_means_s": phases,
        "rows": clean_rows(root / "netassets_home" / "warehouse.duckdb", keys),
    }


def run_phases(dagster_home: Path, run_ids: list[str]) -> dict[str, float]:
    """Mean seconds per run: queued (waiting for a slot), launched -> started (the run worker
    process starting and importing the code location), started -> finished (the executor:
    the in-process steps, with the GX import and the wait for the pool slot, event log writes)."""
    import dagster as dg

    kinds = {
        dg.DagsterEventType.RUN_ENQUEUED: "enqueued",
        dg.DagsterEventType.RUN_STARTING: "launched",
        dg.DagsterEventType.RUN_START: "started",
        dg.DagsterEventType.RUN_SUCCESS: "finished",
    }
    sums = {"queued": 0.0, "run_worker_start": 0.0, "execution": 0.0}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run_id in run_ids:
            at = {}
            for record in instance.get_records_for_run(run_id, of_type=set(kinds)).records:
                at[kinds[record.event_log_entry.dagster_event.event_type]] = record.event_log_entry.timestamp
            sums["queued"] += at["launched"] - at["enqueued"]
            sums["run_worker_start"] += at["started"] - at["launched"]
            sums["execution"] += at["finished"] - at["started"]
    return {phase: total / len(run_ids) for phase, total in sums.items()}


def _print_backfill(name: str, b: dict, import_s: float) -> None:
    print(
        f"\n{name}: {b['backfill_status']}, all runs done {b['runs_done_s']:.0f} s after launch "
        f"(backfill marked done at {b['wall_s']:.0f} s), mean run {b['run_s_mean']:.1f} s, "
        f"mean queue->start {b['queue_to_start_s_mean']:.1f} s; `dagster dev` start {b['server_start_s']:.0f} s; "
        f"per run: {', '.join(f'{k} {v:.1f} s' for k, v in b['run_phase_means_s'].items())}; "
        f"import netassets.definitions {import_s:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--max-runs", type=int, default=2, help="dagster dev: runs at once (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    keys = keys_for(args.partitions)
    with tempfile.TemporaryDirectory(prefix="bench_backfill_") as tmp:
        root = Path(tmp)
        home = root / "inproc"
        os.environ["NETASSETS_HOME"] = str(home)
        os.environ.pop("NETASSETS_LENS_ROOT", None)

        t = time.perf_counter()
        import netassets.definitions  # noqa: F401  (what every run worker imports: torch, transformers, ...)

        import_s = time.perf_counter() - t
        from netassets.lens.sample import write_lens

        write_lens(home / "landing" / "lens", [REGION], FIRST_DAY, len(keys), seed=0, hours=1, rate_hz=10)

        print(f"{len(keys)} partitions; import netassets.definitions {import_s:.1f} s", flush=True)
        results = {}
        for name, run in (
            ("direct", lambda: method_direct(home, keys)),
            ("materialize", lambda: method_materialize(home, keys)),
            ("backfill", lambda: method_backfill(root / "dagster_dev", keys, args.max_runs, warm=True)),
            ("backfill_default", lambda: method_backfill(root / "dagster_dev_default", keys, args.max_runs, warm=False)),
        ):
            results[name] = run()
            print(f"  {name}: {results[name]['wall_s']:.1f} s", flush=True)

    rows = {name: r.pop("rows") for name, r in results.items()}
    rows_match = (rows["direct"] == rows["materialize"] == rows["backfill"] == rows["backfill_default"]
                  and all(rows["direct"].values()))
    n = len(keys)
    direct = results["direct"]["wall_s"] / n
    table = [("direct (asset bodies, one process)", direct, None)]
    table.append(("dg.materialize in process", results["materialize"]["wall_s"] / n, None))
    for name, launcher in (("backfill", "warm launcher"), ("backfill_default", "Dagster's default launcher")):
        table.append((f"backfill, {launcher}: wall ({args.max_runs} runs at once)", results[name]["wall_s"] / n, None))
        table.append((f"backfill, {launcher}: first run created -> last done", results[name]["runs_wall_s"] / n, None))
        table.append((f"backfill, {launcher}: run-seconds", results[name]["run_s_sum"] / n, None))

    print()
    print(f"{'method':<66} {'s/partition':>12} {'x direct':>9}")
    for label, per, _ in table:
        print(f"{label:<66} {per:>12.2f} {per / direct:>9.1f}")
    for name in ("backfill", "backfill_default"):
        _print_backfill(name, results[name], import_s)
    print(f"clean groups per partition identical across methods: {rows_match}")

    report = {
        "benchmark": "backfill",
        "partitions": n,
        "partition_keys": [keys[0], keys[-1]],
        "workload": "LENS 1 hour file/day at 10 Hz (36k rows); lens_raw_irtt + lens_clean_groups (min_samples 100) + 2 GX checks",
        "seconds_per_partition": {label: per for label, per, _ in table},
        "ratio_vs_direct": {label: per / direct for label, per, _ in table},
        "methods": results,
        "import_netassets_definitions_s": import_s,
        "clean_rows_per_partition": rows["direct"],
        "clean_rows_match": rows_match,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "python": platform.python_version(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if rows_match else 1


if __name__ == "__main__":
    sys.exit(main())
