"""Fixtures every pipeline's tests use: an isolated NETASSETS_HOME, a real DuckDB file,
an ephemeral Dagster instance, and the shared real datasets (skipped cleanly where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests write landing files and tick a sensor at once; the settle interval has its own tests.
os.environ.setdefault("NETASSETS_LANDING_SETTLE_SECONDS", "0")

from netassets.core.settings import SHARED_DATA_DIR  # noqa: E402
from netassets.core.warehouse import DuckDBWarehouse  # noqa: E402


@pytest.fixture
def netassets_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "netassets_home"
    home.mkdir()
    monkeypatch.setenv("NETASSETS_HOME", str(home))
    monkeypatch.delenv("NETASSETS_LENS_ROOT", raising=False)
    return home


@pytest.fixture
def warehouse(netassets_home: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(database=str(netassets_home / "warehouse.duckdb"))


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared real datasets not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR
