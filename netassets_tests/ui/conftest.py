"""One real `netassets up` per test session for the UI tests (the demo for every pipeline, then
`dagster dev` on it with perfSONAR's search server), and a headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from netassets.devserver import DagsterGraphQL

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


UP_TIMEOUT_S = 600  # the demo (2-5 min on 2 busy cores) plus `dagster dev` loading the code location
URL_LINE = re.compile(r"^Dagster UI: (http://\S+)")


@dataclass
class NetassetsUp(DagsterGraphQL):
    """A running `netassets up`: its process, homes, stdout so far and the UI's GraphQL."""

    process: subprocess.Popen
    home: Path
    stdout_path: Path
    url: str
    log_path: Path
    location: str
    ready_s: float  # from starting `netassets up` to the URL printed (the UI is populated by then)

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 90) -> int:
        """Signal `netassets up` itself (never its children: stopping them is its job)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout_s)


def command_line(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every live process below ``pid``."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        command = command_line(int(entry.name))
        if state != "Z" and command is not None:
            parents[int(entry.name)], commands[int(entry.name)] = int(ppid), command
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = commands[child]
                frontier.append(child)
    return found


def start_netassets_up(root: Path) -> NetassetsUp:
    home = root / "home"
    stdout_path = root / "netassets_up.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETASSETS_", "DAGSTER_HOME"))}
    env.update(NETASSETS_HOME=str(home), OMP_NUM_THREADS="1", GX_ANALYTICS_ENABLED="false")
    started = time.monotonic()
    with stdout_path.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "netassets.cli", "up"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = started + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        text = stdout_path.read_text(errors="replace")
        urls = [m.group(1) for m in map(URL_LINE.match, text.splitlines()) if m]
        if urls:
            ready_s = time.monotonic() - started
            client = NetassetsUp(process, home, stdout_path, urls[0], home / "dagster_dev" / "dagster_dev.log", "",
                                 ready_s)
            client.location = client.loaded_location()[0] or ""
            return client
        if process.poll() is not None:
            raise RuntimeError(f"netassets up exited with {process.returncode} before printing the URL:\n{text[-4000:]}")
        time.sleep(1.0)
    process.kill()
    raise RuntimeError(f"netassets up printed no URL in {UP_TIMEOUT_S} s:\n{stdout_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def netassets_up(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[NetassetsUp]:
    up = start_netassets_up(tmp_path_factory.mktemp("netassets_up"))
    children = descendants(up.process.pid)
    try:
        yield up
    finally:
        # test_up stops it with SIGTERM and checks; this is for a session that failed before that
        try:
            up.stop()
        except subprocess.TimeoutExpired:
            up.process.kill()
        # whatever outlived it, if it is still the same process (a pid may have been reused)
        for pid, command in children.items():
            if command_line(pid) == command:
                os.kill(pid, signal.SIGKILL)
        for log in (up.log_path, up.stdout_path):
            if log.is_file():
                shutil.copy(log, artifacts / log.name)


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
