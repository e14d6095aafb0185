"""README's first command, end to end: `netassets demo` on a fresh home.

Every pipeline's stages succeed; every table asset's materialisation carries the catalog
metadata (row count, table name, column schema) from the warehouse write; every model with a
baseline verdict recorded it as a check; the terminal shows one line per stage and a summary,
not Dagster's event stream (which goes to a file).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from netassets.pipelines import all_pipelines

CATALOG_KEYS = ("dagster/row_count", "dagster/table_name", "dagster/column_schema")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    home = tmp_path_factory.mktemp("demo") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETASSETS_", "DAGSTER_HOME"))}
    env.update(NETASSETS_HOME=str(home), OMP_NUM_THREADS="1", GX_ANALYTICS_ENABLED="false")
    done = subprocess.run([sys.executable, "-m", "netassets.cli", "demo"], env=env, capture_output=True,
                          text=True, timeout=900)
    return home, done


def test_demo_runs_every_pipeline(demo):
    home, done = demo
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    lines = done.stdout.splitlines()
    for described in all_pipelines():
        summary = [line for line in lines if line.startswith(f"{described.name} ")]
        assert summary and " ok " in summary[-1], (described.name, done.stdout[-3000:])
        stage_lines = [line for line in lines if line.startswith(f"[{described.name}] ") and " runs " in line]
        assert len(stage_lines) == len(described.demo_stages), stage_lines
    assert "DEBUG" not in done.stdout and len(lines) < 80, done.stdout[:3000]
    events = home / "demo-events.log"
    assert events.is_file() and "STEP_SUCCESS" in events.read_text()
    assert str(events) in done.stdout


def test_every_table_materialisation_carries_catalog_metadata(demo):
    home, done = demo
    from netassets.definitions import defs

    tables = [spec.key for spec in defs.resolve_all_asset_specs() if "duckdb" in spec.kinds]
    assert len(tables) >= 10, tables
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        problems = []
        for key in tables:
            records = instance.fetch_materializations(key, limit=1000).records
            if not records:
                problems.append(f"{key.to_user_string()}: never materialised by the demo")
            for record in records:
                metadata = record.asset_materialization.metadata
                missing = [k for k in CATALOG_KEYS if k not in metadata]
                if missing:
                    problems.append(f"{key.to_user_string()} {record.partition_key}: missing {missing}")
                elif not metadata["dagster/column_schema"].value.columns:
                    problems.append(f"{key.to_user_string()}: empty column schema")
        assert not problems, problems


def test_verdicts_are_shown_as_checks(demo):
    home, done = demo
    from netassets.definitions import defs

    verdict_checks = [key for key in defs.resolve_asset_graph().asset_check_keys if key.name == "beats_strongest_baseline"]
    assert len(verdict_checks) >= 4, verdict_checks
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        missing = [key.asset_key.to_user_string() for key in verdict_checks
                   if not instance.event_log_storage.get_asset_check_execution_history(key, limit=1)]
    assert not missing, missing
    assert "model vs strongest baseline" in done.stdout
