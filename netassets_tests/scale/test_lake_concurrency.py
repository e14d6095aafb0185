"""Several processes writing one DuckLake table at once, same-partition conflicts, and a
writer SIGKILLed inside its transaction. Real processes, a real Postgres catalog; the
processes meet at file barriers so the overlap is certain, not a race."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from netassets.core import lake
from netassets.core.warehouse import DuckDBWarehouse
from netassets_tests.killed_writer import (
    assert_previous_versions_kept_and_rerun_works,
    kill_writer_inside_its_transaction,
    write_previous_versions,
)

DAY = dt.date(2024, 1, 1)

WRITER = textwrap.dedent(
    """
    import sys, time, datetime as dt
    from pathlib import Path
    import polars as pl
    from netassets.core.warehouse import DuckDBWarehouse

    region, value, rows, barrier, parties = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
    frame = pl.DataFrame({"day": [dt.date(2024, 1, 1)] * rows, "region": [region] * rows, "value": [value] * rows})
    barrier.mkdir(exist_ok=True)

    def meet(conn):  # every writer is inside its transaction, rows inserted, before anyone commits
        (barrier / f"{region}-{value}").touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < parties and time.monotonic() < deadline:
            time.sleep(0.02)

    calls = {"n": 0}
    def first_attempt_meets(conn):
        calls["n"] += 1
        if calls["n"] == 1:
            meet(conn)

    written = DuckDBWarehouse().replace_partition("shared", {"day": dt.date(2024, 1, 1), "region": region},
                                                  data=frame, before_commit=first_attempt_meets)
    print(f"wrote {written} attempts {calls['n']}")
    """
)


def start_writers(specs, barrier: Path, rows: int = 500) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", WRITER, region, str(value), str(rows), str(barrier), str(len(specs))],
                             env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for region, value in specs]


def finish(writers) -> list[str]:
    outputs = [w.communicate(timeout=180)[0] for w in writers]
    for w, out in zip(writers, outputs):
        assert w.returncode == 0, out[-3000:]
    return outputs


@pytest.mark.fault("three processes replacing different partitions of one DuckLake table at once")
def test_concurrent_writers_of_different_partitions_all_succeed(lake_env, tmp_path, record_property):
    regions = ["r0", "r1", "r2"]
    for r in regions:  # the previous versions; replacing them makes the writers' commits conflict
        DuckDBWarehouse().replace_partition("shared", {"day": DAY, "region": r},
                                            data=pl.DataFrame({"day": [DAY] * 9, "region": [r] * 9, "value": [1.0] * 9}))
    outputs = finish(start_writers([(r, 2.0) for r in regions], tmp_path / "second"))
    attempts = [int(out.split("attempts ")[1].split()[0]) for out in outputs]
    assert max(attempts) > 1, f"no replace was retried ({attempts}): the writers did not overlap"
    rows = DuckDBWarehouse().query("SELECT region, count(*), min(value), max(value) FROM shared GROUP BY region ORDER BY region").rows()
    record_property("rows_lost", 3 * 500 - sum(r[1] for r in rows))
    assert rows == [(r, 500, 2.0, 2.0) for r in regions]


@pytest.mark.fault("two processes writing the same new DuckLake partition at once")
@pytest.mark.parametrize("existing", [False, True], ids=["first_write", "replace"])
def test_two_writers_of_one_partition_leave_exactly_one_complete_version(lake_env, tmp_path, existing, record_property):
    if existing:
        DuckDBWarehouse().replace_partition("shared", {"day": DAY, "region": "same"},
                                            data=pl.DataFrame({"day": [DAY] * 3, "region": ["same"] * 3, "value": [0.0] * 3}))
    finish(start_writers([("same", 1.0), ("same", 2.0)], tmp_path / "barrier", rows=400))
    rows = DuckDBWarehouse().query("SELECT count(*), min(value), max(value) FROM shared WHERE region = 'same'").rows()
    (count, low, high), = rows
    record_property("rows_lost", 400 - count if count < 400 else 0)
    assert count == 400 and low == high and low in (1.0, 2.0), rows


def test_a_conflict_is_retried_and_after_the_last_attempt_named(lake_warehouse, monkeypatch):
    w = lake_warehouse
    part = {"day": DAY, "region": "a"}
    w.replace_partition("t", part, data=pl.DataFrame({"day": [DAY], "region": ["a"], "value": [1.0]}))
    w.replace_partition("t", {"day": DAY, "region": "b"}, data=pl.DataFrame({"day": [DAY], "region": ["b"], "value": [1.0]}))
    conflicts = {"left": 2}

    def another_writer_commits_first(conn):  # a concurrent replace of another partition commits meanwhile
        if conflicts["left"]:
            conflicts["left"] -= 1
            w.replace_partition("t", {"day": DAY, "region": "b"},
                                data=pl.DataFrame({"day": [DAY], "region": ["b"], "value": [5.0]}))

    monkeypatch.setenv(lake.ATTEMPTS_ENV, "3")
    new = pl.DataFrame({"day": [DAY] * 2, "region": ["a"] * 2, "value": [2.0] * 2})
    assert w.replace_partition("t", part, data=new, before_commit=another_writer_commits_first).rows == 2
    assert conflicts["left"] == 0  # two attempts conflicted, the third committed
    assert w.query("SELECT region, count(*), sum(value) FROM t GROUP BY region ORDER BY region").rows() == [("a", 2, 4.0), ("b", 1, 5.0)]

    conflicts["left"] = 5
    monkeypatch.setenv(lake.ATTEMPTS_ENV, "2")
    with pytest.raises(lake.WriteConflictError, match=r"t partition .*after 2 attempts"):
        w.replace_partition("t", part, data=new.with_columns(value=pl.lit(9.0)), before_commit=another_writer_commits_first)
    assert w.read_partition("t", part, columns="value").rows() == [(2.0,), (2.0,)]


@pytest.mark.fault("SIGKILL of a DuckLake writer inside its partition write")
def test_sigkill_inside_a_ducklake_write_keeps_the_previous_version(lake_warehouse, lake_env, tmp_path, record_property):
    write_previous_versions(lake_warehouse, DAY)
    files_before = set(Path(lake_env[lake.DATA_PATH_ENV]).rglob("*.parquet"))
    kill_writer_inside_its_transaction(tmp_path, DAY)  # the backend from the environment: DuckLake
    assert set(Path(lake_env[lake.DATA_PATH_ENV]).rglob("*.parquet")) > files_before  # it had written its Parquet
    assert_previous_versions_kept_and_rerun_works(lake_warehouse, DAY, record_property)
