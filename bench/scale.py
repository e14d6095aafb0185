"""Partitions per minute with 1, 2 and 4 concurrent runs: the DuckLake warehouse (Postgres catalog,
Parquet) on a Postgres-backed Dagster instance vs the embedded DuckDB file with its single-writer pool.

    python -m bench.scale [--partitions 8] [--workers 1,2,4] [--out bench/results/scale.json]

Workload per partition (one LENS day x chicago, one hour file at 10 Hz, 36 k rows): a Dagster run of
lens_ingest (lens_raw_irtt + lens_clean_groups in one transaction, pool "duckdb") and both GX checks.
K run workers (processes, K = 1, 2, 4) take partitions from a shared queue until none is left;
each run is `dg.materialize` on the shared instance, which enforces the pools:

  duckdb    the repository's deploy/dagster.yaml in a fresh DAGSTER_HOME (SQLite storage, the duckdb pool
            limited to 1 slot), one DuckDB file: one warehouse-writing step at a time
  ducklake  deploy/dagster_postgres.yaml (Postgres storage, no pool limit), a DuckLake on the same
            Postgres server: writers run at once, conflicting commits retried

Timing starts when every worker has imported the code location and stops when the last run ends.
Reports partitions per minute, the speed-up over 1 worker of the same backend (and per added worker),
and DuckLake / DuckDB at each K, all from this one run; checks every partition's rows are the same
in every configuration and every check passed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "scale.json"
REGION = "chicago"
FIRST_DAY = dt.date(2023, 11, 1)
RUN_CONFIG = {"ops": {"lens_ingest": {"config": {"min_samples": 100}}},
              "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def keys_for(n: int) -> list[str]:
    return [f"{(FIRST_DAY + dt.timedelta(days=d)).isoformat()}|{REGION}" for d in range(n)]


# ---- worker: one process, runs partitions from the queue until it is empty ----------------------

def worker(queue: Path, ready: Path, go: Path, report: Path) -> int:
    import dagster as dg

    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.defs.lens.assets import lens_ingest

    warehouse = DuckDBWarehouse()  # the backend from NETASSETS_WAREHOUSE, as in netassets.definitions
    ready.touch()
    while not go.exists():
        time.sleep(0.01)
    done = []
    with dg.DagsterInstance.get() as instance:
        for key_file in sorted(queue.glob("*.key")):
            taken = key_file.with_suffix(".taken")
            try:
                os.rename(key_file, taken)  # atomic: one worker per partition
            except FileNotFoundError:
                continue
            key = taken.read_text()
            started = time.monotonic()
            result = dg.materialize([lens_ingest], partition_key=key,
                                    instance=instance, run_config=RUN_CONFIG, raise_on_error=False,
                                    resources={"warehouse": warehouse})
            checks = result.get_asset_check_evaluations()
            done.append({"key": key, "success": result.success, "seconds": time.monotonic() - started,
                         "checks_passed": len(checks) == 2 and all(c.passed for c in checks)})
    report.write_text(json.dumps(done))
    return 0


# ---- driver -------------------------------------------------------------------------------------

def run_config_once(root: Path, backend: str, workers: int, keys: list[str], landing: Path, pg) -> dict:
    import dagster as dg
    import yaml

    from netassets.core import lake
    from netassets.pipelines import pipeline

    tag = f"{backend}_{workers}"
    home, dagster_home, queue = root / tag / "home", root / tag / "dagster_home", root / tag / "queue"
    for path in (home, dagster_home, queue):
        path.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETASSETS_LAKE_", "DAGSTER_PG_"))}
    env.update(NETASSETS_HOME=str(home), NETASSETS_LENS_ROOT=str(landing), DAGSTER_HOME=str(dagster_home),
               GX_ANALYTICS_ENABLED="false", OMP_NUM_THREADS="1", DAGSTER_DISABLE_TELEMETRY="1",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if backend == "duckdb":
        config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
        env[lake.BACKEND_ENV] = "duckdb"
    else:
        config = yaml.safe_load((REPO / "deploy" / "dagster_postgres.yaml").read_text())
        pg.createdb(f"dagster_{tag}")
        pg.createdb(f"lake_{tag}")
        env.update({"DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USER": pg.user,
                    "DAGSTER_PG_PASSWORD": pg.password, "DAGSTER_PG_DB": f"dagster_{tag}",
                    lake.BACKEND_ENV: "ducklake", lake.HOST_ENV: pg.host, lake.PORT_ENV: str(pg.port),
                    lake.DATABASE_ENV: f"lake_{tag}", lake.USER_ENV: pg.user, lake.PASSWORD_ENV: pg.password})
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with dg.DagsterInstance.get() as instance:
            pipeline("lens").register(instance, [REGION])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for i, key in enumerate(keys):
        (queue / f"{i:05d}.key").write_text(key)

    go = root / tag / "go"
    procs, readies, reports = [], [], []
    for w in range(workers):
        ready, report = root / tag / f"ready{w}", root / tag / f"report{w}.json"
        readies.append(ready)
        reports.append(report)
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.scale", "--worker", str(queue), str(ready), str(go),
                                       str(report)], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                      stderr=open(root / tag / f"worker{w}.log", "w")))
    while not all(r.exists() for r in readies):
        if any(p.poll() is not None for p in procs):
            raise RuntimeError(f"{tag}: a worker exited before starting: {(root / tag / 'worker0.log').read_text()[-3000:]}")
        time.sleep(0.05)
    start = time.monotonic()
    go.touch()
    for p in procs:
        p.wait()
    wall = time.monotonic() - start
    for w, p in enumerate(procs):
        if p.returncode != 0:
            raise RuntimeError(f"{tag}: worker {w} exited {p.returncode}:\n{(root / tag / f'worker{w}.log').read_text()[-3000:]}")
    runs = [r for report in reports for r in json.loads(report.read_text())]
    failed = [r for r in runs if not (r["success"] and r["checks_passed"])]
    if failed or sorted(r["key"] for r in runs) != sorted(keys):
        logs = "\n".join((root / tag / f"worker{w}.log").read_text()[-2000:] for w in range(workers))
        raise RuntimeError(f"{tag}: failed or missing runs {failed}\n{logs}")
    os.environ.update(env)
    try:
        from netassets.core.warehouse import DuckDBWarehouse

        warehouse = DuckDBWarehouse()
        rows = dict(warehouse.query("SELECT strftime(day, '%Y-%m-%d') || '|' || region, count(*) "
                                    "FROM lens_clean_groups GROUP BY ALL").rows())
        raw = warehouse.query("SELECT sum(rows)::BIGINT FROM lens_raw_irtt").item()
        lake.close_all()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"backend": backend, "workers": workers, "wall_s": wall, "partitions_per_min": len(keys) / wall * 60,
            "run_s_mean": sum(r["seconds"] for r in runs) / len(runs), "clean_rows": rows, "raw_rows": int(raw)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(*(Path(a) for a in argv[1:5]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.partitions < 1:
        parser.error("--partitions must be >= 1")
    counts = [int(x) for x in args.workers.split(",")]
    if not counts or min(counts) < 1:
        parser.error("--workers: comma-separated counts >= 1")

    from netassets.core.pgserver import PostgresServer
    from netassets.lens.sample import write_lens

    keys = keys_for(args.partitions)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp, PostgresServer() as pg:
        root = Path(tmp)
        landing = root / "landing" / "lens"
        write_lens(landing, [REGION], FIRST_DAY, len(keys), seed=0, hours=1, rate_hz=10)
        print(f"{len(keys)} partitions, run workers {counts}; Postgres 127.0.0.1:{pg.port}", flush=True)
        for backend in ("duckdb", "ducklake"):
            for k in counts:
                result = run_config_once(root, backend, k, keys, landing, pg)
                results.append(result)
                print(f"  {backend:8s} {k} worker(s): {result['wall_s']:6.1f} s, {result['partitions_per_min']:5.1f} "
                      f"partitions/min (run {result['run_s_mean']:.1f} s mean)", flush=True)

    reference = results[0]["clean_rows"]
    for r in results:
        if r["clean_rows"] != reference or r["raw_rows"] != results[0]["raw_rows"]:
            raise RuntimeError(f"{r['backend']} x{r['workers']} wrote different rows than {results[0]['backend']} x1")
    by = {(r["backend"], r["workers"]): r for r in results}
    rows = []
    for r in results:
        base = by[(r["backend"], counts[0])]
        speedup = r["partitions_per_min"] / base["partitions_per_min"]
        added = r["workers"] - counts[0]
        other = by.get(("duckdb", r["workers"]))
        rows.append({**{k: v for k, v in r.items() if k != "clean_rows"}, "speedup_vs_1": speedup,
                     "speedup_per_added_worker": (speedup - 1) / added if added else None,
                     "vs_duckdb_same_workers": r["partitions_per_min"] / other["partitions_per_min"] if other else None})
    print(f"\n{'backend':9s} {'workers':>7s} {'wall s':>7s} {'part/min':>9s} {'speed-up':>9s} {'per added':>9s} {'vs duckdb':>9s}")
    for r in rows:
        per = f"{r['speedup_per_added_worker']:+.2f}" if r["speedup_per_added_worker"] is not None else "-"
        print(f"{r['backend']:9s} {r['workers']:7d} {r['wall_s']:7.1f} {r['partitions_per_min']:9.1f} "
              f"{r['speedup_vs_1']:8.2f}x {per:>9s} {r['vs_duckdb_same_workers']:8.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "scale", "partitions": len(keys), "workers": counts, "rows_per_partition_raw": 36_000,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_1min": os.getloadavg()[0]},
        "results": rows,
    }, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
