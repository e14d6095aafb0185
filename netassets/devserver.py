"""A real `dagster dev` started and stopped by netassets: for `netassets up`, tests and benchmarks.

    server = DagsterDev.launch(root, env).wait_ready()
    run_id = server.launch_partition_run("lens_ingest_job", "2023-11-01|chicago", run_config)
    assert server.wait_run(run_id) == "SUCCESS"
    server.stop()

The server runs under its own session (``setsid``) and the whole process group is killed on
stop: `dagster dev` leaves a webserver, a daemon and a code server (and their run workers)
that would otherwise keep the port and the DuckDB file. GraphQL helpers launch runs and
backfills and read their results the way the UI does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from netassets.core.settings import REPO_ROOT

TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


class DagsterDevError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterGraphQL:
    """GraphQL helpers against a running Dagster webserver at ``self.url`` (its log at
    ``self.log_path``, quoted in errors): launch runs and backfills, read their results."""

    url: str
    log_path: Path
    location: str

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def loaded_location(self) -> tuple[str | None, str]:
        """(the code location's name once it is loaded, else None; what the workspace said)."""
        data = self.graphql(
            """{ workspaceOrError { __typename ... on Workspace { locationEntries {
                 name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }""",
            timeout=5,
        )
        entries = data["workspaceOrError"].get("locationEntries") or []
        for entry in entries:
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise DagsterDevError(f"code location {entry['name']} failed to load: {error['message']}")
            if entry["loadStatus"] == "LOADED" and error and error["__typename"] == "RepositoryLocation":
                return entry["name"], ""
        return None, json.dumps(entries)

    # ---- GraphQL ---------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise DagsterDevError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def launch_partition_run(
        self, job_name: str, partition_key: str, run_config: dict, dimensions: tuple[str, str] = ("day", "region")
    ) -> str:
        day, other = partition_key.split("|")
        tags = {
            "dagster/partition": partition_key,
            f"dagster/partition/{dimensions[0]}": day,
            f"dagster/partition/{dimensions[1]}": other,
        }
        data = self.graphql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename
                 ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message }
                 ... on RunConfigValidationInvalid { errors { message } }
                 ... on Error { message } } }""",
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": self.location,
                        "repositoryName": "__repository__",
                        "jobName": job_name,
                    },
                    "runConfigData": run_config,
                    "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
                }
            },
        )
        result = data["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise DagsterDevError(f"launchRun failed: {json.dumps(result)}")
        return result["run"]["runId"]

    def launch_backfill(
        self, partition_names: list[str], assets: Iterable[str], run_config: dict, title: str = "netassets backfill"
    ) -> str:
        data = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                 __typename
                 ... on LaunchBackfillSuccess { backfillId }
                 ... on PythonError { message }
                 ... on Error { message } } }""",
            {
                "params": {
                    "partitionNames": partition_names,
                    "assetSelection": [{"path": [name]} for name in assets],
                    "runConfigData": run_config,
                    "title": title,
                }
            },
        )
        result = data["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise DagsterDevError(f"launchPartitionBackfill failed: {json.dumps(result)}")
        return result["backfillId"]

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            'query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }', {"id": run_id}
        )
        return data["runOrError"]["status"]

    def wait_run(self, run_id: str, timeout_s: float = 180) -> str:
        deadline = time.monotonic() + timeout_s
        status = "UNKNOWN"
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in TERMINAL:
                return status
            time.sleep(1.0)
        raise DagsterDevError(f"run {run_id} still {status} after {timeout_s:.0f} s:\n{self.log_tail()}")

    def backfill_status(self, backfill_id: str) -> str:
        data = self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { status } ... on Error { message } } }""",
            {"id": backfill_id},
        )
        result = data["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise DagsterDevError(f"backfill {backfill_id}: {json.dumps(result)}")
        return result["status"]

    def backfill_runs(self, backfill_id: str) -> list[dict]:
        """[{runId, status, partition, startTime, endTime}] of the runs the daemon launched for a backfill."""
        data = self.graphql(
            """query($tag: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $tag}]}) {
                 __typename ... on Runs { results { runId status startTime endTime creationTime
                                                      tags { key value } } } } }""",
            {"tag": backfill_id},
        )
        runs = []
        for run in data["runsOrError"]["results"]:
            tags = {t["key"]: t["value"] for t in run.pop("tags")}
            runs.append({**run, "partition": tags.get("dagster/partition")})
        return runs

    def wait_backfill(self, backfill_id: str, expected_runs: int, timeout_s: float) -> tuple[str, list[dict]]:
        """Wait until the backfill is done and `expected_runs` runs have finished; return (status, runs)."""
        deadline = time.monotonic() + timeout_s
        status, runs = "UNKNOWN", []
        while time.monotonic() < deadline:
            status = self.backfill_status(backfill_id)
            runs = self.backfill_runs(backfill_id)
            finished = [r for r in runs if r["status"] in TERMINAL]
            if status not in ("REQUESTED",) and len(finished) >= expected_runs:
                return status, runs
            if status in ("FAILED", "CANCELED", "COMPLETED_FAILED", "FAILING", "CANCELING"):
                return status, runs
            time.sleep(2.0)
        raise DagsterDevError(
            f"backfill {backfill_id} still {status} after {timeout_s:.0f} s; runs: {json.dumps(runs)}\n{self.log_tail()}"
        )

    def materializations(self, asset: str, partitions: list[str]) -> list[dict]:
        """[{partition, runId}] of an asset's materialisations of these partitions."""
        data = self.graphql(
            """query($key: AssetKeyInput!, $partitions: [String!]) { assetOrError(assetKey: $key) {
                 __typename ... on Asset { assetMaterializations(partitions: $partitions) { partition runId } } } }""",
            {"key": {"path": [asset]}, "partitions": partitions},
        )
        result = data["assetOrError"]
        if result["__typename"] != "Asset":
            raise DagsterDevError(f"asset {asset}: {json.dumps(result)}")
        return result["assetMaterializations"]

    def check_executions(self, asset: str, check: str, partition: str) -> list[dict]:
        """The latest executions of an asset check on one partition: [{runId, status, partition, evaluation}]."""
        data = self.graphql(
            """query($key: AssetKeyInput!, $name: String!, $partition: String) {
                 assetCheckExecutions(assetKey: $key, checkName: $name, partition: $partition, limit: 20) {
                   runId status partition evaluation { success } } }""",
            {"key": {"path": [asset]}, "name": check, "partition": partition},
        )
        return data["assetCheckExecutions"]



@dataclass
class DagsterDev(DagsterGraphQL):
    root: Path
    port: int
    process: subprocess.Popen
    log_path: Path
    env: dict[str, str]
    location: str = ""
    started_s: float = 0.0
    _log: Any = field(default=None, repr=False)
    host: str = "127.0.0.1"  # the interface it listens on

    @property
    def url(self) -> str:
        """Where to reach it: its interface, or loopback when it listens on every interface."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def launch(cls, root: Path, env: dict[str, str], host: str = "127.0.0.1", port: int | None = None) -> "DagsterDev":
        """Start `dagster dev` on the code location with ``env`` (DAGSTER_HOME, NETASSETS_HOME, ...);
        returns at once (see wait_ready). Its output goes to ``root/dagster_dev.log``."""
        root.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        log_path = root / "dagster_dev.log"
        log = open(log_path, "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-m", "netassets.definitions", "-h", host, "-p", str(port)],
            # Where a user types `dagster dev`: the repository root (pyproject's [tool.dg] names the
            # code location); the instance settings live in deploy/, so none shadow DAGSTER_HOME's.
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid: its own process group, killed as a whole in stop()
        )
        return cls(root=root, port=port, process=process, log_path=log_path, env=env, started_s=time.monotonic(), _log=log,
                   host=host)

    def wait_ready(self, timeout_s: float = 240) -> "DagsterDev":
        """Block until the code location is loaded (stopping the server if it never is)."""
        try:
            self.location = self._wait_loaded(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.monotonic() - self.started_s
        return self

    def __enter__(self) -> "DagsterDev":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left of it."""
        try:
            pgid = os.getpgid(self.process.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
            # children (code server, run workers) may outlive the dagster dev parent
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _group_alive(pgid):
                time.sleep(0.2)
            if _group_alive(pgid):
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.process.poll() is None:
            self.process.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None

    def _wait_loaded(self, timeout_s: float) -> str:
        """Poll GraphQL until the code location is loaded; return its name."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DagsterDevError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                name, last = self.loaded_location()
                if name:
                    return name
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                last = repr(exc)
            time.sleep(1.0)
        raise DagsterDevError(f"dagster dev not ready after {timeout_s:.0f} s (last: {last}):\n{self.log_tail()}")

def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of our own direct child count as gone once reaped; others are checked via /proc
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
