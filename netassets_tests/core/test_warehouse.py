"""The warehouse's partition replace: new columns, catalog metadata, transactions, and the
connection that writes wide rows in small row groups."""

import datetime as dt

import polars as pl
import pytest

DAY = dt.date(2024, 1, 1)


def test_a_new_column_is_added_and_older_partitions_read_null(warehouse):
    warehouse.replace_partition("scores", {"day": DAY, "region": "a"},
                                data=pl.DataFrame({"day": [DAY], "region": ["a"], "score": [1.0]}))
    written = warehouse.replace_partition(
        "scores", {"day": DAY, "region": "b"},
        select_sql="SELECT CAST($day AS DATE) AS day, 'b' AS region, 2.0 AS score, 0.5 AS likelihood",
        params={"day": DAY})
    assert written.rows == 1
    rows = warehouse.query("SELECT region, score, likelihood FROM scores ORDER BY region").rows()
    assert rows == [("a", 1.0, None), ("b", 2.0, 0.5)]


def test_a_write_reports_the_catalog_metadata_of_the_table(warehouse):
    written = warehouse.replace_partition("scores", {"day": DAY, "region": "a"},
                                          data=pl.DataFrame({"day": [DAY, DAY], "region": ["a", "a"], "score": [1.0, 2.0]}))
    metadata = written.metadata
    assert metadata["dagster/row_count"].value == 2
    assert metadata["dagster/table_name"].value == "warehouse.main.scores"
    columns = [(c.name, c.type) for c in metadata["dagster/column_schema"].columns]
    assert columns == [("day", "DATE"), ("region", "VARCHAR"), ("score", "DOUBLE")]


def test_a_transaction_commits_several_partition_replaces_together_or_none(warehouse):
    def rows(table: str, value: float) -> pl.DataFrame:
        return pl.DataFrame({"day": [DAY], "region": ["a"], "value": [value]})

    partition = {"day": DAY, "region": "a"}
    with warehouse.transaction() as conn:
        warehouse.replace_partition("raw_rows", partition, data=rows("raw_rows", 1.0), conn=conn)
        warehouse.replace_partition("clean_rows", partition, data=rows("clean_rows", 1.0), conn=conn)
    with pytest.raises(RuntimeError, match="cleaning failed"):
        with warehouse.transaction() as conn:
            warehouse.replace_partition("raw_rows", partition, data=rows("raw_rows", 2.0), conn=conn)
            raise RuntimeError("cleaning failed")
    assert warehouse.query("SELECT value FROM raw_rows").item() == 1.0  # the raw replace rolled back with it
    assert warehouse.query("SELECT value FROM clean_rows").item() == 1.0


def test_a_transaction_whose_body_went_on_after_a_failed_replace_commits_nothing(warehouse):
    from netassets.core.warehouse import PartitionReplaceFailed

    partition = {"day": DAY, "region": "a"}
    warehouse.replace_partition("rows", partition, data=pl.DataFrame({"day": [DAY], "region": ["a"], "value": [1.0]}))

    def refuse(conn):
        raise RuntimeError("a check of the new rows failed")

    with pytest.raises(PartitionReplaceFailed, match="nothing of the transaction was committed"):
        with warehouse.transaction() as conn:
            try:
                warehouse.replace_partition("rows", partition, conn=conn, before_commit=refuse,
                                            data=pl.DataFrame({"day": [DAY], "region": ["a"], "value": [9.0]}))
            except RuntimeError:
                pass  # a body that swallows the error
    assert warehouse.query("SELECT value FROM rows").item() == 1.0


def test_fractions_are_never_rounded_into_an_integer_column(warehouse):
    """The insert casts to the table's types: 0.7 into a BIGINT column was stored as 1."""
    warehouse.replace_partition("counts", {"day": DAY}, data=pl.DataFrame({"day": [DAY], "value": [3]}))
    with pytest.raises(TypeError, match=r"counts.value is BIGINT and the new rows hold DOUBLE: .* rounded"):
        warehouse.replace_partition("counts", {"day": DAY}, data=pl.DataFrame({"day": [DAY], "value": [0.7]}))
    assert warehouse.query("SELECT value FROM counts").item() == 3  # the partition as it was
    # A column that holds no value yet (a first version wrote only NULLs, typed INTEGER) takes the fractions.
    warehouse.replace_partition("scores", {"day": DAY}, data=pl.DataFrame({"day": [DAY], "score": [None]}))
    later = dt.date(2024, 1, 2)
    warehouse.replace_partition("scores", {"day": later}, data=pl.DataFrame({"day": [later], "score": [0.93]}))
    assert warehouse.query("SELECT score FROM scores WHERE day = $day", {"day": later}).item() == 0.93


def test_wide_rows_written_in_small_row_groups_skip_the_wal_and_read_back_the_same(warehouse):
    """A transaction that fills whole row groups is written straight to the file; one that does
    not goes through the WAL first (and is written again by the checkpoint on close)."""
    import numpy as np
    import pyarrow as pa

    from netassets.core.warehouse import WIDE_ROW_GROUP_SIZE, in_row_groups

    n, points = WIDE_ROW_GROUP_SIZE + 100, 200
    values = np.random.default_rng(0).random(n * points)
    offsets = pa.array(np.arange(0, (n + 1) * points, points, dtype=np.int32))
    rows = pa.table({"day": pa.array([DAY] * n, pa.date32()), "group_id": pa.array(np.arange(n)),
                     "series": pa.ListArray.from_arrays(offsets, pa.array(values))})
    wal = warehouse.path.with_name(warehouse.path.name + ".wal")
    wal_at_commit = {}
    for row_group_size in (None, WIDE_ROW_GROUP_SIZE):
        with warehouse.connect(row_group_size=row_group_size) as conn:
            # as lens_ingest writes them: one Arrow batch per row group, inserted in parallel
            data = rows if row_group_size is None else in_row_groups(rows)
            warehouse.replace_partition("wide", {"day": DAY}, data=data, conn=conn)
            wal_at_commit[row_group_size] = wal.stat().st_size if wal.exists() else 0
        read = warehouse.query("SELECT series FROM wide ORDER BY group_id")["series"]
        assert np.array_equal(np.concatenate(read.to_list()), values)
    assert wal_at_commit[None] > values.nbytes  # every value went to the WAL
    assert wal_at_commit[WIDE_ROW_GROUP_SIZE] < values.nbytes / 100  # only the catalog change did


@pytest.mark.parametrize("name", ["main.duckdb", "memory.duckdb", "temp.duckdb", "it's \"odd\".v2.duckdb"])
def test_a_transaction_in_small_row_groups_works_whatever_the_file_is_named(tmp_path, name):
    """The row-group connection attaches the file itself: under the name a plain connection gives
    it, even where that name is reserved or holds quotes."""
    from netassets.core.warehouse import WIDE_ROW_GROUP_SIZE, DuckDBWarehouse

    warehouse = DuckDBWarehouse(database=str(tmp_path / name))
    with warehouse.transaction(WIDE_ROW_GROUP_SIZE) as conn:
        written = warehouse.replace_partition("scores", {"day": DAY}, data=pl.DataFrame({"day": [DAY], "score": [1.0]}),
                                              conn=conn)
        spill = conn.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert written.rows == 1 and spill == f"{warehouse.path}.tmp"
    assert warehouse.query("SELECT score FROM scores").rows() == [(1.0,)]


def test_replacing_small_partitions_again_and_again_keeps_the_file_flat_without_vacuum(warehouse):
    """Write connections run no vacuum tasks at their checkpoint (WRITE_SETTINGS): each small
    partition keeps row groups of its own, which its next replace deletes whole, so the file
    does not grow over rounds of replacing every partition, and every partition reads back."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    from netassets.core.warehouse import WIDE_ROW_GROUP_SIZE, in_row_groups

    def groups(day: dt.date, version: int) -> pa.Table:
        rng = np.random.default_rng(day.toordinal() * 10 + version)
        values = rng.normal(30, 5, 200 * 1500)
        offsets = pa.array(np.arange(0, 201 * 1500, 1500, dtype=np.int32))
        return pa.table({"day": pa.array([day] * 200, pa.date32()), "group_id": pa.array(np.arange(200)),
                         "rtt": pa.ListArray.from_arrays(offsets, pa.array(values))})

    days = [DAY + dt.timedelta(days=d) for d in range(10)]
    sizes = []
    for version in range(4):
        for day in days:
            with warehouse.transaction(WIDE_ROW_GROUP_SIZE) as conn:
                assert conn.execute("SELECT current_setting('max_vacuum_tasks')").fetchone() == (0,)
                warehouse.replace_partition("wide", {"day": day}, data=in_row_groups(groups(day, version)), conn=conn)
        sizes.append(warehouse.path.stat().st_size)
    assert sizes[3] <= sizes[1] * 1.05, sizes  # the space of replaced partitions is reused
    with duckdb.connect(str(warehouse.path), read_only=True) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT day) FROM wide").fetchone() == (2000, 10)
        for day in days[:2]:
            expected = groups(day, 3)["rtt"].combine_chunks().values.to_numpy()
            stored = conn.execute("SELECT flatten(list(rtt ORDER BY group_id)) FROM wide WHERE day = ?", [day]).fetchone()[0]
            assert np.array_equal(np.array(stored), expected)


def test_a_column_name_later_writes_would_refuse_is_refused_at_the_first(warehouse):
    with pytest.raises(ValueError, match="invalid SQL identifier 'Throughput'"):
        warehouse.replace_partition("links", {"day": DAY}, data=pl.DataFrame({"day": [DAY], "Throughput": [1.0]}))
    assert warehouse.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'links'").item() == 0
