"""One `dagster dev` per test session for the UI and backfill tests (starting it imports torch:
tens of seconds), with LENS sample data for 2 days x 2 regions, and a headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from netassets_tests.ui.dagster_dev import TEST_DAYS, TEST_REGIONS, LensDev

CHROMIUM = Path(os.environ.get("NETASSETS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[LensDev]:
    server = LensDev.launch_with_data(tmp_path_factory.mktemp("dagster_dev"), regions=TEST_REGIONS, days=TEST_DAYS)
    try:
        import netassets.definitions  # noqa: F401  (the tests read it; import while the server loads it too)

        yield server.wait_ready(timeout_s=240)
    finally:
        server.stop()  # os.killpg on the whole session: webserver, daemon, code server, run workers
        shutil.copy(server.log_path, artifacts / "dagster_dev.log")


@pytest.fixture(scope="session")
def browser(artifacts: Path):
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's `chromium` package (CI does), "
            "or point NETASSETS_CHROMIUM at a Chromium binary. The UI test never skips."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the item (rep_call), so fixtures can screenshot on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
