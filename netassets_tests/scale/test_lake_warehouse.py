"""The DuckLake backend keeps the warehouse's contract: one transactional partition replace,
new columns added, several replaces committed together or not at all, Parquet under the data
path, clear errors for an unreachable catalog and an unwritable data path."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb
import polars as pl
import pytest

from netassets.core import lake
from netassets.core.warehouse import DuckDBWarehouse, EmptyPartitionError

DAY = dt.date(2024, 1, 1)


def frame(region: str, values: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"day": [DAY] * len(values), "region": [region] * len(values), "value": values})


def test_the_embedded_duckdb_file_stays_the_default(netassets_home, monkeypatch):
    monkeypatch.delenv(lake.BACKEND_ENV, raising=False)
    warehouse = DuckDBWarehouse()
    assert warehouse.lake_settings() is None
    warehouse.replace_partition("t", {"day": DAY, "region": "a"}, data=frame("a", [1.0]))
    assert (netassets_home / "warehouse.duckdb").exists() and not (netassets_home / "lake").exists()
    monkeypatch.setenv(lake.BACKEND_ENV, "iceberg")
    with pytest.raises(ValueError, match="iceberg"):
        DuckDBWarehouse().lake_settings()


def test_replace_partition_on_ducklake_writes_parquet_and_replaces_only_its_partition(lake_warehouse, lake_env):
    w = lake_warehouse
    assert w.replace_partition("t", {"day": DAY, "region": "a"}, data=frame("a", [1.0, 2.0])).rows == 2
    assert w.replace_partition("t", {"day": DAY, "region": "b"}, data=frame("b", [5.0])).rows == 1
    assert w.replace_partition("t", {"day": DAY, "region": "a"}, data=frame("a", [3.0])).rows == 1
    assert w.query("SELECT region, sum(value) FROM t GROUP BY region ORDER BY region").rows() == [("a", 3.0), ("b", 5.0)]
    assert w.read_partition("t", {"day": DAY, "region": "a"}, columns="value").rows() == [(3.0,)]
    files = list(Path(lake_env[lake.DATA_PATH_ENV]).rglob("*.parquet"))
    assert files, "DuckLake wrote no Parquet file under its data path"
    assert not (Path(os.environ["NETASSETS_HOME"]) / "warehouse.duckdb").exists()
    # a new column, older partitions read NULL
    w.replace_partition("t", {"day": DAY, "region": "c"},
                        select_sql="SELECT CAST($day AS DATE) AS day, 'c' AS region, 7.0 AS value, 1 AS extra",
                        params={"day": DAY})
    assert w.query("SELECT region, extra FROM t ORDER BY region").rows() == [("a", None), ("b", None), ("c", 1)]
    with pytest.raises(EmptyPartitionError):
        w.replace_partition("t", {"day": DAY, "region": "a"}, data=frame("a", []).cast({"value": pl.Float64}))
    assert w.read_partition("t", {"day": DAY, "region": "a"}, columns="value").rows() == [(3.0,)]


def test_a_ducklake_transaction_commits_several_replaces_together_or_none(lake_warehouse):
    w = lake_warehouse
    partition = {"day": DAY, "region": "a"}

    def both(value: float):
        def body(conn):
            w.replace_partition("raw_rows", partition, data=frame("a", [value]), conn=conn)
            w.replace_partition("clean_rows", partition, data=frame("a", [value]), conn=conn)
            if value < 0:
                raise RuntimeError("cleaning failed")
        return body

    w.run_transaction(both(1.0))
    with pytest.raises(RuntimeError, match="cleaning failed"):
        w.run_transaction(both(-1.0))
    assert w.query("SELECT value FROM raw_rows").item() == 1.0
    assert w.query("SELECT value FROM clean_rows").item() == 1.0


def test_an_unreachable_catalog_names_host_and_port_and_writes_nothing(lake_env, monkeypatch, tmp_path):
    from netassets.core.pgserver import free_port

    port = free_port()
    data = tmp_path / "never"
    monkeypatch.setenv(lake.PORT_ENV, str(port))
    monkeypatch.setenv(lake.DATA_PATH_ENV, str(data))
    with pytest.raises(lake.LakeUnavailableError) as caught:
        DuckDBWarehouse().replace_partition("t", {"day": DAY, "region": "a"}, data=frame("a", [1.0]))
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message
    assert lake_env[lake.PASSWORD_ENV] not in message
    assert not data.exists()


def test_a_wrong_password_is_refused_without_showing_it(lake_env, monkeypatch):
    monkeypatch.setenv(lake.PASSWORD_ENV, "not-the-password-x9")
    with pytest.raises(lake.LakeUnavailableError) as caught:
        DuckDBWarehouse().query("SELECT 1")
    assert "not-the-password-x9" not in str(caught.value) and "password authentication failed" in str(caught.value)


def test_an_unwritable_data_path_is_named_and_the_previous_version_stays(lake_warehouse, lake_env, postgres,
                                                                         monkeypatch, tmp_path):
    w = lake_warehouse
    w.replace_partition("t", {"day": DAY, "region": "a"}, data=frame("a", [1.0]))
    # The catalog answers, but the table's folder under the data path cannot be created (a file is
    # in the way; chmod would not stop root): the insert fails inside the transaction.
    table_dir = Path(lake_env[lake.DATA_PATH_ENV]) / "main" / "t"
    for child in table_dir.iterdir():
        child.rename(tmp_path / child.name)
    table_dir.rmdir()
    table_dir.write_text("in the way")
    try:
        with pytest.raises(duckdb.Error):
            w.replace_partition("t", {"day": DAY, "region": "a"}, data=frame("a", [9.0, 9.0]))
    finally:
        table_dir.unlink()
        table_dir.mkdir()
        for child in tmp_path.glob("ducklake-*"):
            child.rename(table_dir / child.name)
    assert w.read_partition("t", {"day": DAY, "region": "a"}, columns="value").rows() == [(1.0,)]
    # The data path itself not writable: refused before anything is written.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    postgres.createdb("lake_unwritable")
    monkeypatch.setenv(lake.DATABASE_ENV, "lake_unwritable")
    monkeypatch.setenv(lake.DATA_PATH_ENV, str(blocker / "lake"))
    with pytest.raises(lake.LakeDataPathError, match="not writable"):
        DuckDBWarehouse().replace_partition("t", {"day": DAY, "region": "b"}, data=frame("b", [1.0]))


def test_a_committed_transaction_whose_collapse_gives_up_is_not_run_again(lake_warehouse, monkeypatch):
    """The collapse of concurrent first versions runs after COMMIT: when it kept conflicting, the
    retry loop took it for a conflict of the transaction and ran the committed body again (each
    run committed). A collapse that keeps conflicting cannot be timed against a real writer, so it
    is injected here."""
    def collapse_gives_up(*args, **kwargs):
        try:
            raise duckdb.TransactionException("Transaction conflict (injected)")
        except duckdb.TransactionException as exc:
            raise lake.WriteConflictError("still conflicting (injected)") from exc

    monkeypatch.setattr(lake, "keep_latest_version", collapse_gives_up)
    calls = []

    def body(conn):
        calls.append(1)
        lake_warehouse.replace_partition("collapsed", {"day": DAY, "region": f"r{len(calls)}"}, conn=conn,
                                         data=pl.DataFrame({"day": [DAY], "region": [f"r{len(calls)}"], "v": [1.0]}))

    with pytest.raises(lake.CollapseGaveUp, match="the transaction committed"):
        lake_warehouse.run_transaction(body)
    assert len(calls) == 1
    assert lake_warehouse.query("SELECT region FROM collapsed")["region"].to_list() == ["r1"]
