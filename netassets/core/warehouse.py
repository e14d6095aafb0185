"""The DuckDB warehouse: short connections, and one transaction to replace a partition.

DuckDB allows one writing process per file. Steps of the multiprocess executor take
the ``duckdb`` concurrency pool (limit 1 in deploy/dagster.yaml); on top of that every connection
retries briefly on a lock conflict, so a `dagster dev` reader or a second run does not fail
a write outright.

With ``backend="ducklake"`` (or NETASSETS_WAREHOUSE=ducklake) the same resource writes a DuckLake
(Postgres catalog, Parquet files) instead, where several processes may write at once:
see ``netassets.core.lake``.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa

from netassets.core import lake
from netassets.core.settings import netassets_home, warehouse_path

POOL = "duckdb"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
# Connections inside a ``DuckDBWarehouse.transaction()``: partition replaces on them join it
# instead of committing on their own.
_IN_TRANSACTION: set[int] = set()
# DuckLake only: first writes (the partition was empty) inside a transaction, collapsed after COMMIT.
_FIRST_WRITES: dict[int, list[tuple[str, str, list[Any]]]] = {}
# Transactions in which a partition replace failed: whatever the body did with the error, they
# roll back (the replace's DELETE and INSERT would otherwise commit with the rest).
_FAILED_IN_TRANSACTION: set[int] = set()
_INTEGER_TYPES = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
                            "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"})


# DuckDB writes a transaction's rows to its WAL, and again to the file at the next checkpoint,
# unless the transaction fills a whole row group (122,880 rows by default): those it writes once,
# straight to the file. A full LENS day is 5,719 rows of two 1500-point lists, 131 MB, so it went
# through the WAL; in row groups of 2048 rows, inserted as ``in_row_groups`` batches, it is written
# once (insert, commit and checkpoint: ~0.5 s against ~1.3 s, bench.lens_clean's layouts). Only for
# the transactions that write wide rows (and the few narrow rows they write beside them): other
# writes keep the default, whose larger row groups compress and scan better.
WIDE_ROW_GROUP_SIZE = 2048


# Settings of every connection that writes the DuckDB file (each is a database instance of its
# own). No vacuum tasks at the checkpoint that ends it: they merged the row groups of small
# partitions written one transaction at a time, rewriting every partition since the last full row
# group at each commit (a 237-group LENS partition: 60 ms -> 140 ms over nine, then again),
# and compacted row groups a replace had deleted in part, which a partition replace never leaves:
# it deletes a partition's row groups whole, and the checkpoint frees those without a vacuum
# (the file's size stays flat over rounds of replacing every partition; tested). Full-day
# partitions, three row groups each, write in the same time either way.
WRITE_SETTINGS = {"max_vacuum_tasks": 0}


def _catalog_name(path: Path) -> str:
    """The catalog name DuckDB gives a database file: its name up to the first dot, with ``_db``
    after a reserved one (and after ``memory``, the in-memory database it is attached beside)."""
    name = path.name.split(".")[0]
    return f"{name}_db" if name.lower() in ("main", "temp", "system", "memory") else name


def in_row_groups(table: pa.Table) -> pa.Table:
    """``table`` as record batches of one row group each (slices, no copy): DuckDB's Arrow scan
    inserts the batches in parallel, each thread writing its own row groups (a full LENS day:
    0.41 s against 0.63 s as one batch)."""
    return pa.Table.from_batches(table.to_batches(max_chunksize=WIDE_ROW_GROUP_SIZE), schema=table.schema)


class EmptyPartitionError(ValueError):
    """A partition write produced no rows: an error, never a silent skip."""


class PartitionReplaceFailed(RuntimeError):
    """A transaction whose body went on after one of its partition replaces failed: rolled back."""


@dataclass(frozen=True)
class PartitionWrite:
    """What one partition replace wrote, and the catalog metadata every table asset reports:
    ``dagster/row_count`` (the partition's rows), ``dagster/table_name`` and
    ``dagster/column_schema`` (the table's columns as DuckDB has them after the write)."""

    table: str
    rows: int
    columns: tuple[tuple[str, str], ...]
    database: str

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "dagster/row_count": dg.MetadataValue.int(self.rows),
            "dagster/table_name": dg.MetadataValue.text(f"{self.database}.main.{self.table}"),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, type=column_type) for name, column_type in self.columns]
            ),
        }


def ident(name: str) -> str:
    """A table or column name checked against a strict pattern, safe to format into SQL."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid SQL identifier {name!r}")
    return name


def _where(filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
    if not filters:
        raise ValueError("a partition needs at least one filter column")
    clause = " AND ".join(f"{ident(col)} = ?" for col in filters)
    return clause, list(filters.values())


class DuckDBWarehouse(dg.ConfigurableResource):
    """Path of the DuckDB file (default: $NETASSETS_HOME/warehouse.duckdb), or a DuckLake."""

    database: str = ""
    lock_retry_seconds: float = 30.0
    backend: str = ""  # "duckdb" or "ducklake"; empty: $NETASSETS_WAREHOUSE, else "duckdb"

    def lake_settings(self) -> lake.LakeSettings | None:
        """The DuckLake settings when that backend is chosen, else None (the DuckDB file)."""
        if lake.backend_name(self.backend) != "ducklake":
            return None
        return lake.LakeSettings.from_env(netassets_home() / "lake")

    @property
    def path(self) -> Path:
        return Path(self.database) if self.database else warehouse_path()

    @contextmanager
    def connect(self, read_only: bool = False, row_group_size: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse. ``row_group_size`` (a multiple of 2048; DuckDB file only)
        sizes the row groups this connection writes: see ``WIDE_ROW_GROUP_SIZE``."""
        settings = self.lake_settings()
        if settings is not None:
            conn = lake.connect(settings, read_only=read_only)
            try:
                yield conn
            finally:
                conn.close()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only and not self.path.exists():
            read_only = False  # let DuckDB create the file instead of failing on a fresh home
        deadline = time.monotonic() + self.lock_retry_seconds
        delay = 0.05
        while True:
            try:
                conn = self._open(read_only, row_group_size)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield conn
        finally:
            conn.close()

    def _open(self, read_only: bool, row_group_size: int | None) -> duckdb.DuckDBPyConnection:
        config = {} if read_only else WRITE_SETTINGS
        if row_group_size is None:
            return duckdb.connect(str(self.path), read_only=read_only, config=config)
        # A row group size is an option of ATTACH only, and lasts for this connection. The file is
        # attached under the name a plain connection gives it, and spills where one would.
        conn = duckdb.connect(config=config)
        try:
            # ATTACH and SET take no bound parameters: the path and name go in as quoted literals
            path = "'" + str(self.path).replace("'", "''") + "'"
            alias = '"' + _catalog_name(self.path).replace('"', '""') + '"'
            conn.execute(f"ATTACH {path} AS {alias} (READ_ONLY {str(read_only).upper()}, "
                         f"ROW_GROUP_SIZE {int(row_group_size)})")
            conn.execute(f"USE {alias}")
            conn.execute("SET temp_directory = '" + f"{self.path}.tmp".replace("'", "''") + "'")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def transaction(self, row_group_size: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction around several partition replaces (e.g. a raw table and the table
        cleaned from it): all of them commit together, or none does. On DuckLake a commit that
        conflicts with a concurrent writer raises ``WriteConflictError``: run the body through
        ``run_transaction`` to have it retried."""
        settings = self.lake_settings()
        with self.connect(row_group_size=row_group_size) as conn:
            conn.execute("BEGIN TRANSACTION")
            _IN_TRANSACTION.add(id(conn))
            _FIRST_WRITES[id(conn)] = []
            try:
                yield conn
                if id(conn) in _FAILED_IN_TRANSACTION:
                    raise PartitionReplaceFailed("a partition replace in this transaction failed (its error went to "
                                                 "the caller, which went on); nothing of the transaction was committed")
                conn.execute("COMMIT")
                for table, where, where_params in _FIRST_WRITES[id(conn)] if settings else ():
                    try:
                        lake.keep_latest_version(settings, conn, table, where, where_params)
                    except lake.WriteConflictError as exc:  # committed: never a conflict to retry the body for
                        raise lake.CollapseGaveUp(
                            f"the transaction committed, but collapsing concurrent first versions of {table} kept "
                            f"conflicting ({exc}); its next write of the partition replaces both") from exc
            except duckdb.TransactionException as exc:
                lake.rollback(conn)
                if settings is not None and lake.is_conflict(exc):
                    raise lake.WriteConflictError(f"DuckLake commit conflicted with a concurrent writer: {exc}") from exc
                raise
            except BaseException:
                lake.rollback(conn)
                raise
            finally:
                _IN_TRANSACTION.discard(id(conn))
                _FIRST_WRITES.pop(id(conn), None)
                _FAILED_IN_TRANSACTION.discard(id(conn))

    def run_transaction(self, body: Callable[[duckdb.DuckDBPyConnection], Any], row_group_size: int | None = None) -> Any:
        """``body(conn)`` inside ``transaction()``; on DuckLake retried from the start while its
        commit conflicts with concurrent writers (NETASSETS_LAKE_WRITE_ATTEMPTS), then
        ``WriteConflictError``. On the DuckDB file: exactly one ``transaction(row_group_size)``."""
        settings = self.lake_settings()
        if settings is None:
            with self.transaction(row_group_size) as conn:
                return body(conn)

        def attempt() -> Any:
            try:
                with self.transaction() as conn:
                    return body(conn)
            except lake.WriteConflictError as exc:
                raise exc.__cause__ from None  # the TransactionException: retry_conflicts retries it

        return lake.retry_conflicts(settings, "transaction", attempt)

    def table_exists(self, conn: duckdb.DuckDBPyConnection, table: str) -> bool:
        return bool(
            conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [ident(table)]
            ).fetchone()[0]
        )

    def replace_partition(
        self,
        table: str,
        partition: Mapping[str, Any],
        data: pl.DataFrame | pa.Table | None = None,
        *,
        select_sql: str | None = None,
        params: Mapping[str, Any] | None = None,
        conn: duckdb.DuckDBPyConnection | None = None,
        before_commit: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
        allow_empty: bool = False,
    ) -> PartitionWrite:
        """Delete the partition's rows and insert the new ones in one transaction.

        The new rows come from a polars/Arrow frame (``data``) or from ``select_sql`` run inside
        the transaction with bound ``params``, on ``conn`` if given (so temporary tables on it are
        visible) or on a fresh connection. They go straight into the table (no staging copy);
        ``before_commit(conn)`` may then inspect or prune the partition's new rows and raise to
        abort. The table is created from the first version's schema. If anything fails, or the
        result is empty and ``allow_empty`` is false, the transaction rolls back and the previous
        version of the partition stays intact. Returns the rows written and the table's catalog
        metadata (``PartitionWrite.metadata``), for the asset's materialisation.
        """
        if (data is None) == (select_sql is None):
            raise ValueError("pass exactly one of data or select_sql")
        if conn is None:
            with self.connect() as own:
                return self.replace_partition(
                    table, partition, data, select_sql=select_sql, params=params, conn=own,
                    before_commit=before_commit, allow_empty=allow_empty,
                )
        table = ident(table)
        where, where_params = _where(partition)
        if data is not None:
            conn.register("_netassets_new_rows", data.to_arrow() if isinstance(data, pl.DataFrame) else data)
            source, source_params = "SELECT * FROM _netassets_new_rows", {}
        else:
            source, source_params = select_sql, dict(params or {})
        joined = id(conn) in _IN_TRANSACTION  # part of a larger transaction: it commits or rolls back
        settings = self.lake_settings()
        if settings is not None and not joined:  # DuckLake: retried from the start on a write conflict
            def attempt() -> PartitionWrite:
                return self._replace(conn, table, partition, where, where_params, source, source_params,
                                     before_commit, allow_empty, joined, settings)

            try:
                return lake.retry_conflicts(settings, f"{table} partition {dict(partition)}", attempt)
            finally:
                if data is not None:
                    conn.unregister("_netassets_new_rows")
        try:
            return self._replace(conn, table, partition, where, where_params, source, source_params,
                                 before_commit, allow_empty, joined, settings)
        finally:
            if data is not None:
                conn.unregister("_netassets_new_rows")

    def _replace(self, conn, table, partition, where, where_params, source, source_params,
                 before_commit, allow_empty, joined, settings) -> PartitionWrite:
        if not joined:
            conn.execute("BEGIN TRANSACTION")
        try:
            if not self.table_exists(conn, table):
                for name, *_ in conn.execute(f"DESCRIBE SELECT * FROM ({source})", source_params).fetchall():
                    ident(name)  # as every later write checks them: a name it refuses would stop every one
                conn.execute(f"CREATE TABLE {table} AS SELECT * FROM ({source}) LIMIT 0", source_params)
            else:
                self._reconcile_columns(conn, table, source, source_params)
            (deleted,) = conn.execute(f"DELETE FROM {table} WHERE {where}", where_params).fetchone()
            conn.execute(f"INSERT INTO {table} BY NAME {source}", source_params)
            if before_commit is not None:
                before_commit(conn)
            written = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", where_params).fetchone()[0]
            if written == 0 and not allow_empty:
                raise EmptyPartitionError(
                    f"{table}: partition {dict(partition)} produced no rows; refusing to replace it with nothing"
                )
            columns = tuple((name, column_type) for name, column_type, *_ in conn.execute(f"DESCRIBE {table}").fetchall())
            if not joined:
                conn.execute("COMMIT")
        except BaseException:
            if joined:
                _FAILED_IN_TRANSACTION.add(id(conn))
            else:
                lake.rollback(conn)
            raise
        if settings is not None and deleted == 0:  # a first write: a concurrent one may also have committed
            if joined:
                _FIRST_WRITES.setdefault(id(conn), []).append((table, where, where_params))
            else:
                lake.keep_latest_version(settings, conn, table, where, where_params)
        return PartitionWrite(table, int(written), columns, "lake" if settings is not None else self.path.stem)

    def _reconcile_columns(self, conn: duckdb.DuckDBPyConnection, table: str, source: str,
                           params: Mapping[str, Any]) -> None:
        """A newer version of an asset may write more columns than the table has: add them (older
        partitions read NULL there) instead of failing every write into an existing warehouse.
        Fractions into an integer column would be rounded by the insert's cast without a word:
        the column takes the fractional type where it holds no value yet (a first version that
        wrote only NULLs typed it INTEGER), and the write is refused where it does."""
        existing = {row[0]: row[1] for row in conn.execute(f"DESCRIBE {table}").fetchall()}
        for name, column_type, *_ in conn.execute(f"DESCRIBE SELECT * FROM ({source})", params).fetchall():
            column = ident(name)
            if name not in existing:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {column_type}")
            elif existing[name] in _INTEGER_TYPES and column_type.startswith(("FLOAT", "DOUBLE", "DECIMAL")):
                if conn.execute(f"SELECT count({column}) FROM {table}").fetchone()[0]:
                    raise TypeError(f"{table}.{name} is {existing[name]} and the new rows hold {column_type}: stored "
                                    "there they would be rounded; nothing was written (write integers, or migrate "
                                    "the column's type)")
                conn.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {column_type}")

    def read_partition(
        self, table: str, partition: Mapping[str, Any], columns: str = "*", order_by: str | None = None
    ) -> pl.DataFrame:
        where, where_params = _where(partition)
        order = f" ORDER BY {', '.join(ident(c.strip()) for c in order_by.split(','))}" if order_by else ""
        with self.connect(read_only=True) as conn:
            if not self.table_exists(conn, table):
                raise LookupError(f"table {table!r} does not exist yet in {self.path}: materialise its asset first")
            cols = columns if columns == "*" else ", ".join(ident(c.strip()) for c in columns.split(","))
            return conn.execute(f"SELECT {cols} FROM {ident(table)} WHERE {where}{order}", where_params).pl()

    def query(self, sql: str, params: Mapping[str, Any] | list[Any] | None = None) -> pl.DataFrame:
        with self.connect(read_only=True) as conn:
            return conn.execute(sql, params).pl()
