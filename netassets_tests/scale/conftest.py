"""A real PostgreSQL server for the whole session (initdb into a temporary folder, a free
loopback port, stopped at the end) and a fresh DuckLake per test on it.

Missing PostgreSQL binaries fail these tests (never skip): .ci/run installs Debian's postgresql.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from netassets.core import lake
from netassets.core.pgserver import PostgresServer
from netassets.core.warehouse import DuckDBWarehouse

_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    server.start()  # PostgresBinariesMissing here fails the test with the install hint
    try:
        yield server
    finally:
        lake.close_all()
        server.stop()


@pytest.fixture
def lake_env(postgres: PostgresServer, netassets_home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """NETASSETS_WAREHOUSE=ducklake on a fresh catalog database and data path; the env it set."""
    database = f"lake_{next(_numbers)}"
    postgres.createdb(database)
    env = {
        lake.BACKEND_ENV: "ducklake",
        lake.HOST_ENV: postgres.host, lake.PORT_ENV: str(postgres.port), lake.DATABASE_ENV: database,
        lake.USER_ENV: postgres.user, lake.PASSWORD_ENV: postgres.password,
        lake.DATA_PATH_ENV: str(netassets_home / "lake"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield env
    lake.close_all()


@pytest.fixture
def lake_warehouse(lake_env) -> DuckDBWarehouse:
    return DuckDBWarehouse()
