"""The DuckLake warehouse backend: a Postgres catalog, Parquet files under a data path.

Chosen with ``NETASSETS_WAREHOUSE=ducklake`` (or ``DuckDBWarehouse(backend="ducklake")``); the
embedded DuckDB file stays the default. A connection is an in-memory DuckDB with the lake
attached as ``lake`` and selected (``USE lake``), so every asset's SQL runs unchanged and
temporary tables stay local to the connection.

Settings (environment variables; the password is read from the environment only, passed to
DuckDB as a bound secret parameter, and never logged or put into a connection string):

  NETASSETS_LAKE_PGHOST / _PGPORT / _PGDATABASE / _PGUSER / _PGPASSWORD   the Postgres catalog
  NETASSETS_LAKE_DATA_PATH     Parquet data path (default $NETASSETS_HOME/lake)
  NETASSETS_LAKE_WRITE_ATTEMPTS   attempts of one partition write on a conflict (default 20)

Concurrent writers. Each process writes its own Parquet files and commits a snapshot to the
catalog. DuckLake (1.5.x) refuses a commit whose table another transaction deleted from, or
inserted into while this one deleted, since it began: replacing a partition (delete + insert)
therefore conflicts with any concurrent write to the same table, while first writes of
different partitions (inserts only) never do. netassets retries a conflicting partition
write from the start (new snapshot, new files; jittered exponential backoff) up to
NETASSETS_LAKE_WRITE_ATTEMPTS times, then raises ``WriteConflictError`` naming the table and
partition; the rolled-back attempts leave nothing visible. Two first writes of one partition
do not conflict (both only insert), so a write that found its partition empty looks again
after its commit and, if two versions are visible, deletes every row but those of the latest
snapshot: exactly one complete version remains, the last committed.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import duckdb

BACKEND_ENV = "NETASSETS_WAREHOUSE"
BACKENDS = ("duckdb", "ducklake")
HOST_ENV, PORT_ENV = "NETASSETS_LAKE_PGHOST", "NETASSETS_LAKE_PGPORT"
DATABASE_ENV, USER_ENV, PASSWORD_ENV = "NETASSETS_LAKE_PGDATABASE", "NETASSETS_LAKE_PGUSER", "NETASSETS_LAKE_PGPASSWORD"
DATA_PATH_ENV = "NETASSETS_LAKE_DATA_PATH"
ATTEMPTS_ENV = "NETASSETS_LAKE_WRITE_ATTEMPTS"
DEFAULT_ATTEMPTS = 20
EXTENSION_VERSION = "v1.5.5"
_EXTENSIONS = (("duckdb_extension_postgres_scanner", "postgres_scanner"), ("duckdb_extension_ducklake", "ducklake"))

T = TypeVar("T")


class LakeUnavailableError(ConnectionError):
    """The Postgres catalog cannot be reached: nothing was read or written."""


class LakeDataPathError(OSError):
    """The catalog answered but the Parquet data path cannot be written: nothing was written."""


class WriteConflictError(RuntimeError):
    """A partition write still conflicted with concurrent writers after every retry."""


def backend_name(configured: str = "") -> str:
    name = (configured or os.environ.get(BACKEND_ENV, "") or "duckdb").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"warehouse backend {name!r} (from config or ${BACKEND_ENV}): expected one of {BACKENDS}")
    return name


@dataclass(frozen=True)
class LakeSettings:
    host: str
    port: int
    database: str
    user: str
    data_path: str
    password: str = field(default="", repr=False)
    write_attempts: int = DEFAULT_ATTEMPTS

    @classmethod
    def from_env(cls, default_data_path: Path) -> "LakeSettings":
        raw_port = os.environ.get(PORT_ENV, "5432")
        try:
            port = int(raw_port)
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise ValueError(f"{PORT_ENV}={raw_port!r}: expected a TCP port")
        raw_attempts = os.environ.get(ATTEMPTS_ENV, str(DEFAULT_ATTEMPTS))
        if not raw_attempts.isdigit() or int(raw_attempts) < 1:
            raise ValueError(f"{ATTEMPTS_ENV}={raw_attempts!r}: expected an integer >= 1")
        return cls(
            host=os.environ.get(HOST_ENV, "127.0.0.1"), port=port,
            database=os.environ.get(DATABASE_ENV, "netassets_lake"), user=os.environ.get(USER_ENV, "netassets"),
            data_path=os.environ.get(DATA_PATH_ENV, "") or str(default_data_path),
            password=os.environ.get(PASSWORD_ENV, ""), write_attempts=int(raw_attempts),
        )

    @property
    def where(self) -> str:
        return f"Postgres at {self.host}:{self.port} (database {self.database!r}, user {self.user!r})"


def _extension_path(package: str, name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the DuckLake backend needs the {package.replace('_', '-')} package (pip install "
                                  f"'netassets[lake]'); DuckDB cannot download extensions here")
    path = Path(list(spec.submodule_search_locations)[0]) / "extensions" / EXTENSION_VERSION / f"{name}.duckdb_extension"
    if not path.exists():
        raise FileNotFoundError(f"{path}: DuckDB extension {name} {EXTENSION_VERSION} missing from {package}")
    return path


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _redact(message: str, settings: LakeSettings) -> str:
    return message.replace(settings.password, "***") if settings.password else message


_instances: dict[tuple, duckdb.DuckDBPyConnection] = {}
_instances_lock = threading.Lock()


def _open_instance(settings: LakeSettings) -> duckdb.DuckDBPyConnection:
    base = duckdb.connect()
    try:
        for package, name in _EXTENSIONS:
            base.execute(f"LOAD {_literal(str(_extension_path(package, name)))}")
        base.execute(
            "CREATE SECRET netassets_lake_catalog (TYPE postgres, HOST ?, PORT ?, DATABASE ?, USER ?, PASSWORD ?)",
            [settings.host, settings.port, settings.database, settings.user, settings.password],
        )
        try:
            base.execute(
                f"ATTACH 'ducklake:postgres:' AS lake (DATA_PATH {_literal(settings.data_path)}, "
                "METADATA_PARAMETERS MAP {'SECRET': 'netassets_lake_catalog'}, DATA_INLINING_ROW_LIMIT 0)"
            )
        except duckdb.Error as exc:
            text = _redact(str(exc), settings)
            if "Unable to connect" not in text:
                raise type(exc)(f"DuckLake catalog at {settings.where}: {text}") from None
            reason = text.split('": ', 1)[-1].strip()
            raise LakeUnavailableError(f"DuckLake catalog unreachable: {settings.where}: {reason}") from None
    except BaseException:
        base.close()
        raise
    return base


def _instance(settings: LakeSettings) -> duckdb.DuckDBPyConnection:
    key = (os.getpid(), settings)
    with _instances_lock:
        base = _instances.get(key)
        if base is None:
            base = _instances[key] = _open_instance(settings)
        return base


def close_all() -> None:
    """Close this process's lake instances (tests switch catalogs)."""
    with _instances_lock:
        while _instances:
            _instances.popitem()[1].close()


def _check_data_path(settings: LakeSettings) -> None:
    if "://" in settings.data_path:
        return  # object storage: DuckDB reports its own errors on write
    path = Path(settings.data_path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".netassets-write-probe-"):
            pass
    except OSError as exc:
        raise LakeDataPathError(
            f"DuckLake data path {path} is not writable ({exc.strerror or exc}); the catalog ({settings.where}) "
            "answered, nothing was written"
        ) from None


def connect(settings: LakeSettings, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A new connection (own transactions and temporary objects) with ``USE lake``; caller closes it."""
    try:
        conn = _instance(settings).cursor()
        conn.execute("USE lake")
    except duckdb.Error:
        with _instances_lock:  # the catalog connection broke: reattach on the next call
            old = _instances.pop((os.getpid(), settings), None)
        if old is not None:
            old.close()
        conn = _instance(settings).cursor()
        conn.execute("USE lake")
    if not read_only:
        try:
            _check_data_path(settings)
        except BaseException:
            conn.close()
            raise
    return conn


def is_conflict(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, duckdb.TransactionException) and (
        "Transaction conflict" in text or "maximum retry count" in text or "conflict" in text.lower()
    )


class CollapseGaveUp(RuntimeError):
    """A transaction committed, and collapsing concurrent first versions after it kept conflicting:
    not a write conflict (running the body again would commit it twice), and never retried."""


def retry_conflicts(settings: LakeSettings, what: str, attempt: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``attempt()`` until it commits without a DuckLake write conflict."""
    delay = 0.05
    started = time.monotonic()
    for number in range(1, settings.write_attempts + 1):
        try:
            return attempt()
        except duckdb.TransactionException as exc:
            if not is_conflict(exc):
                raise
            last = str(exc).splitlines()[-1].strip()
            if number == settings.write_attempts:
                raise WriteConflictError(
                    f"{what}: still conflicting with concurrent writers after {number} attempts in "
                    f"{time.monotonic() - started:.1f} s (last: {last}); nothing of these attempts was committed. "
                    f"Raise {ATTEMPTS_ENV} or run fewer concurrent writers on this table"
                ) from exc
            sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.7, 2.0)
    raise AssertionError("unreachable")


def keep_latest_version(settings: LakeSettings, conn: duckdb.DuckDBPyConnection, table: str, where: str,
                        params: list[Any]) -> int:
    """After a first write of a partition: if a concurrent first write also committed, keep only
    the rows of the latest snapshot. Returns the number of rows deleted."""

    def once() -> int:
        conn.execute("BEGIN TRANSACTION")
        try:
            (versions,) = conn.execute(f"SELECT count(DISTINCT snapshot_id) FROM {table} WHERE {where}", params).fetchone()
            deleted = 0
            if versions > 1:
                deleted = conn.execute(
                    f"DELETE FROM {table} WHERE {where} AND snapshot_id < "
                    f"(SELECT max(snapshot_id) FROM {table} WHERE {where})", params + params,
                ).fetchone()[0]
            conn.execute("COMMIT")
            return int(deleted)
        except BaseException:
            rollback(conn)
            raise

    return retry_conflicts(settings, f"{table} (collapsing concurrent first versions)", once)


def rollback(conn: duckdb.DuckDBPyConnection) -> None:
    """ROLLBACK, tolerating a transaction the failed COMMIT already ended."""
    try:
        conn.execute("ROLLBACK")
    except duckdb.TransactionException as exc:
        if "no transaction is active" not in str(exc):
            raise


def lake_files(settings: LakeSettings) -> Iterator[Path]:
    """Parquet files under a local data path (tests, the benchmark)."""
    yield from Path(settings.data_path).rglob("*.parquet")
