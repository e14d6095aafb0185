"""Beyond one machine, end to end: a Postgres-backed Dagster instance (deploy/dagster_postgres.yaml:
runs, events and schedules in Postgres, the QueuedRunCoordinator) and the DuckLake warehouse,
`dagster dev` with its daemon, a multi-run backfill of 3 day x region partitions, all 3 runs at
once and no writer limit. Checks every partition's rows and both GX checks, that runs really
overlapped, that the runs live in Postgres, and that the password never reached the log."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg2
import pytest

from netassets.core import lake
from netassets.core.warehouse import DuckDBWarehouse
from netassets_tests.ui.dagster_dev import LENS_ASSETS, LENS_CHECKS, partition_keys
from netassets_tests.ui.dagster_dev import LensDev as DagsterDev

REPO = Path(__file__).resolve().parents[2]
REGIONS = ["chicago", "ottawa"]
PARTITIONS = partition_keys(2, REGIONS)[:3]  # 3 partitions, 3 runs at once: several, and cheap on 2 cores
ROWS_PER_PARTITION = 36_000  # one hour file at 10 Hz


def test_multi_run_backfill_on_postgres_dagster_and_ducklake(postgres, tmp_path, monkeypatch):
    postgres.createdb("dagster_backfill")
    postgres.createdb("lake_backfill")
    env = {
        "DAGSTER_PG_HOST": postgres.host, "DAGSTER_PG_PORT": str(postgres.port), "DAGSTER_PG_USER": postgres.user,
        "DAGSTER_PG_PASSWORD": postgres.password, "DAGSTER_PG_DB": "dagster_backfill",
        lake.BACKEND_ENV: "ducklake", lake.HOST_ENV: postgres.host, lake.PORT_ENV: str(postgres.port),
        lake.DATABASE_ENV: "lake_backfill", lake.USER_ENV: postgres.user, lake.PASSWORD_ENV: postgres.password,
    }
    server = DagsterDev.start(tmp_path / "deploy", regions=REGIONS, days=2, max_runs=3,
                              dagster_yaml=REPO / "deploy" / "dagster_postgres.yaml", extra_env=env)
    try:
        backfill_id = server.launch_backfill(PARTITIONS, assets=LENS_ASSETS)
        status, runs = server.wait_backfill(backfill_id, expected_runs=len(PARTITIONS), timeout_s=400)
        assert sorted(r["partition"] for r in runs) == sorted(PARTITIONS), runs
        failed = [r for r in runs if r["status"] != "SUCCESS"]
        assert not failed, f"runs not successful: {failed}\n{server.log_tail()}"
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
        run_of = {r["partition"]: r["runId"] for r in runs}
        for asset, check in zip(LENS_ASSETS, LENS_CHECKS):
            events = server.materializations(asset, PARTITIONS)
            assert {e["partition"] for e in events if run_of[e["partition"]] == e["runId"]} == set(PARTITIONS), asset
            for partition in PARTITIONS:
                done = [e for e in server.check_executions(asset, check, partition) if e["runId"] == run_of[partition]]
                assert done and done[0]["evaluation"]["success"] is True, (check, partition, done)
        log = server.log_tail(10**7)
    finally:
        server.stop()

    # Several runs at once: some two runs' [start, end] intervals overlap.
    spans = sorted((r["startTime"], r["endTime"]) for r in runs)
    assert any(later_start < end for (_, end), (later_start, _) in zip(spans, spans[1:])), spans
    # The runs are stored in Postgres, not SQLite.
    with psycopg2.connect(host=postgres.host, port=postgres.port, user=postgres.user, password=postgres.password,
                          dbname="dagster_backfill") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] == len(PARTITIONS)
    assert not list((tmp_path / "deploy" / "dagster_home").rglob("*.db")), "an SQLite storage file was created"
    assert postgres.password not in log

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NETASSETS_HOME", str(tmp_path / "deploy" / "netassets_home"))
    warehouse = DuckDBWarehouse()
    raw = dict(warehouse.query("SELECT strftime(day, '%Y-%m-%d') || '|' || region, sum(rows)::BIGINT FROM lens_raw_irtt GROUP BY ALL").rows())
    clean = dict(warehouse.query("SELECT strftime(day, '%Y-%m-%d') || '|' || region, count(*) FROM lens_clean_groups GROUP BY ALL").rows())
    assert raw == {p: ROWS_PER_PARTITION for p in PARTITIONS}
    assert set(clean) == set(PARTITIONS) and all(n > 200 for n in clean.values()), clean
    assert not (tmp_path / "deploy" / "netassets_home" / "warehouse.duckdb").exists()
    assert list((tmp_path / "deploy" / "netassets_home" / "lake").rglob("*.parquet"))
    lake.close_all()
