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

from netassets.core.settings import SHARED_DATA_DIR, instance_setting  # noqa: E402
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
    with dg.instance_for_test(overrides={"compute_logs": instance_setting("compute_logs")}) as inst:
        yield inst


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared real datasets not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


# ---- the fault tally ---------------------------------------------------------------------------
# Tests marked ``@pytest.mark.fault("what is injected")`` inject a real fault (SIGKILL, a second
# writer, a file growing mid-read, a cluster going down); a passing one survived it. Those that
# write rows record how many were lost with ``record_property("rows_lost", n)``. The summary at the
# end of the run prints the tally. The fault rides on the report's user properties, so the tally
# also adds up when pytest-xdist runs the tests in worker processes.

_FAULTS: list[tuple[str, str, bool, int | None]] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(description): the test injects a real fault and must survive it")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``) a test file runs in one worker, so its module and
    session fixtures (generated data, a demo run) are built once; the UI tests share one
    `dagster dev`, so they share a worker too."""
    for item in items:
        group = "dagster_dev" if item.path.parent.name == "ui" else str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))
    # The longest files first, so that no worker starts one of them last.
    longest = ("test_up.py", "test_postgres_backfill.py")
    items.sort(key=lambda item: longest.index(item.path.name) if item.path.name in longest else len(longest))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker is not None and report.when == "call":
        report.user_properties.append(("fault", marker.args[0]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    properties = dict(report.user_properties)
    if report.when == "call" and "fault" in properties:
        _FAULTS.append((properties["fault"], report.nodeid.split("::", 1)[-1], report.passed,
                        properties.get("rows_lost")))


def pytest_terminal_summary(terminalreporter) -> None:
    if not _FAULTS:
        return
    write = terminalreporter.write_line
    survived = sum(ok for _, _, ok, _ in _FAULTS)
    lost = sum(n or 0 for *_, n in _FAULTS)
    terminalreporter.section("fault tally")
    for fault, test, ok, rows_lost in _FAULTS:
        rows = "" if rows_lost is None else f", rows lost {rows_lost}"
        write(f"{'survived' if ok else 'FAILED  '}  {fault}{rows}  ({test})")
    write(f"faults injected: {len(_FAULTS)}, survived: {survived}, rows lost: {lost}")
