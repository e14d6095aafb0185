"""Reliability of partition writes against real processes and a real DuckDB file.

- SIGKILL lands inside the write transaction (after the old rows are deleted and the new
  ones inserted, before COMMIT): the warehouse opens, the previous version is intact, a rerun
  succeeds. The child signals "inside the transaction" through a file so the kill is not a
  race; the kill itself is real.
- Two processes materialise different partitions at the same time: DuckDB allows one writer
  per file, and the warehouse's lock retry makes the second wait instead of failing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netassets.core.warehouse import DuckDBWarehouse
from netassets.pipelines import pipeline
from netassets.lens.sample import write_lens
from netassets_tests.killed_writer import (
    assert_previous_versions_kept_and_rerun_works,
    kill_writer_inside_its_transaction,
    write_previous_versions,
)
from netassets_tests.lens.conftest import DAY

@pytest.mark.fault("SIGKILL of a step inside its partition write")
def test_sigkill_inside_a_partition_write_keeps_the_previous_version(tmp_path: Path, record_property):
    database = tmp_path / "warehouse.duckdb"
    warehouse = DuckDBWarehouse(database=str(database))
    write_previous_versions(warehouse, DAY)
    kill_writer_inside_its_transaction(tmp_path, DAY, str(database))
    assert_previous_versions_kept_and_rerun_works(warehouse, DAY, record_property)


CHILD_MATERIALIZE = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.defs.lens.assets import lens_ingest
    from netassets.pipelines import pipeline

    database, region = sys.argv[1], sys.argv[2]
    with dg.instance_for_test() as instance:
        pipeline("lens").register(instance, [region])
        result = dg.materialize([lens_ingest], partition_key=f"2023-11-01|{region}",
                                resources={"warehouse": DuckDBWarehouse(database=database)}, instance=instance,
                                run_config={"ops": {"lens_ingest": {"config": {"min_samples": 100}}}})
    sys.exit(0 if result.success else 1)
    """
)


@pytest.mark.fault("two runs writing the warehouse at once")
def test_two_runs_writing_different_partitions_at_once_both_succeed(tmp_path: Path, record_property):
    root = tmp_path / "lens"
    write_lens(root, ["chicago", "ottawa"], DAY, days=1, seed=5, hours=4, rate_hz=10)
    database = tmp_path / "warehouse.duckdb"
    env = {**os.environ, "NETASSETS_LENS_ROOT": str(root), "NETASSETS_HOME": str(tmp_path / "home")}
    runs = [
        subprocess.Popen([sys.executable, "-c", CHILD_MATERIALIZE, str(database), region], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for region in ("chicago", "ottawa")
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 0, output[-3000:]
    counts = dict(DuckDBWarehouse(database=str(database)).query(
        "SELECT region, sum(rows)::BIGINT FROM lens_raw_irtt GROUP BY region").rows())
    record_property("rows_lost", 288_000 - sum(counts.values()))
    assert counts == {"chicago": 144_000, "ottawa": 144_000}


CHILD_KILLED_AFTER_COMMIT = textwrap.dedent(
    """
    import os, signal, sys
    from contextlib import contextmanager
    import dagster as dg
    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.defs.lens.assets import lens_ingest
    from netassets.pipelines import pipeline

    database, kill = sys.argv[1], sys.argv[2] == "kill"
    if kill:
        # The one fault injected by wrapping: the step dies right after DuckDB committed and before
        # Dagster records the materialisation, a window too short to hit with an outside kill.
        transaction = DuckDBWarehouse.transaction
        @contextmanager
        def commit_then_die(self, *args, **kwargs):
            with transaction(self, *args, **kwargs) as conn:
                yield conn
            os.kill(os.getpid(), signal.SIGKILL)
        DuckDBWarehouse.transaction = commit_then_die
    with dg.DagsterInstance.get() as instance:
        pipeline("lens").register(instance, ["chicago"])
        result = dg.materialize([lens_ingest], partition_key="2023-11-01|chicago", instance=instance,
                                resources={"warehouse": DuckDBWarehouse(database=database)},
                                run_config={"ops": {"lens_ingest": {"config": {"min_samples": 100}}}})
    sys.exit(0 if result.success else 1)
    """
)


@pytest.mark.fault("SIGKILL of a step after its commit, before Dagster recorded it")
def test_a_step_killed_after_commit_is_re_recorded_by_the_rerun(tmp_path: Path, record_property):
    import dagster as dg

    root = tmp_path / "lens"
    write_lens(root, ["chicago"], DAY, days=1, seed=5, hours=2, rate_hz=10)
    database = tmp_path / "warehouse.duckdb"
    (tmp_path / "dagster_home").mkdir()
    env = {**os.environ, "NETASSETS_LENS_ROOT": str(root), "NETASSETS_HOME": str(tmp_path / "home"),
           "DAGSTER_HOME": str(tmp_path / "dagster_home")}

    def run(mode: str) -> int:
        return subprocess.run([sys.executable, "-c", CHILD_KILLED_AFTER_COMMIT, str(database), mode], env=env,
                              capture_output=True, timeout=300).returncode

    assert run("kill") == -signal.SIGKILL
    warehouse = DuckDBWarehouse(database=str(database))
    assert warehouse.query("SELECT sum(rows)::BIGINT FROM lens_raw_irtt").item() == 72_000  # committed ...
    key = dg.AssetKey("lens_raw_irtt")
    os.environ["DAGSTER_HOME"], saved = str(tmp_path / "dagster_home"), os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            assert instance.get_latest_materialization_event(key) is None  # ... but never recorded
        assert run("rerun") == 0
        with dg.DagsterInstance.get() as instance:
            event = instance.get_latest_materialization_event(key)
            assert event is not None and event.asset_materialization.partition == "2023-11-01|chicago"
            recorded = event.asset_materialization.metadata["dagster/row_count"].value
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = saved
    stored = warehouse.query("SELECT sum(rows)::BIGINT FROM lens_raw_irtt").item()
    record_property("rows_lost", 72_000 - stored)
    assert recorded == stored == 72_000  # agree, no duplicates
