"""WarmRunLauncher (deploy/dagster.yaml's run launcher) with a real instance and real run workers.

Runs are created as the daemon creates them (a code origin naming a module) and launched through
the launcher; each run worker is a real fork of the warm process, writing to the instance's real
SQLite storage. The `netassets up` UI test and bench/backfill.py run it under `dagster dev`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.launcher.base import LaunchRunContext, WorkerStatus

from netassets.core.run_launcher import DEFAULT_PRELOAD, PID_TAG, WarmRunLauncher
from netassets_tests.ops import warm_jobs

MODULE = "netassets_tests.ops.warm_jobs"
TERMINAL = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _write_probe(root: Path, version: int) -> None:
    package = root / "warm_probe"
    package.mkdir(exist_ok=True)
    source = package / "__init__.py"
    before = source.stat().st_mtime_ns if source.exists() else 0
    source.write_text(f"VERSION = {version}\n")
    # an edit within the file system's timestamp resolution must still look like an edit
    os.utime(source, ns=(max(before + 10**9, time.time_ns()),) * 2)


@pytest.fixture
def warm(tmp_path, monkeypatch):
    """(instance, launcher) with the probe package importable by the test and by the warm process."""
    _write_probe(tmp_path, 1)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    launcher = WarmRunLauncher(preload=[MODULE, "dagster._cli.api", "great_expectations", "warm_probe"],
                               watch=["warm_probe"])
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        yield instance, launcher
        launcher.dispose()


def _worker_pid(instance, run_id: str) -> int:
    return int(instance.get_run_by_id(run_id).tags[PID_TAG].partition(":")[0])


def _launch(instance, launcher, job, run_config=None) -> str:
    origin = ReconstructableJob.for_module(MODULE, job.name).get_python_origin()
    run = instance.create_run_for_job(job_def=job, run_config=run_config or {}, job_code_origin=origin)
    launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return run.run_id


def _wait(instance, run_id: str, statuses, timeout_s: float = 90) -> dg.DagsterRunStatus:
    deadline = time.monotonic() + timeout_s
    while (status := instance.get_run_by_id(run_id).status) not in statuses:
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(0.1)
    return status


def _probe(instance, launcher, tmp_path: Path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    run_id = _launch(instance, launcher, warm_jobs.probe_job, {"ops": {"report_worker": {"config": {"out": str(out)}}}})
    assert _wait(instance, run_id, TERMINAL) == dg.DagsterRunStatus.SUCCESS
    [start] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
    report = json.loads(out.read_text())
    assert report["pid"] == start.dagster_event.pid == _worker_pid(instance, run_id)
    return report


def test_each_run_is_a_fork_of_one_warm_process(warm, tmp_path):
    instance, launcher = warm
    first = _probe(instance, launcher, tmp_path, "first")
    zygote = launcher._zygote.process.pid
    second = _probe(instance, launcher, tmp_path, "second")
    assert first["great_expectations_preloaded"] and second["great_expectations_preloaded"]
    assert first["pid"] != second["pid"] != zygote
    assert launcher._zygote.process.pid == zygote, "a second run started a second warm process"


def test_an_edited_source_file_is_what_the_next_run_runs(warm, tmp_path):
    instance, launcher = warm
    assert _probe(instance, launcher, tmp_path, "before")["probe_version"] == 1
    old = launcher._zygote.process
    _write_probe(tmp_path, 2)
    assert _probe(instance, launcher, tmp_path, "after")["probe_version"] == 2
    assert old.poll() is not None, "the stale warm process was left running"


def test_terminate_cancels_the_run(warm):
    instance, launcher = warm
    run_id = _launch(instance, launcher, warm_jobs.sleepy_job)
    _wait(instance, run_id, {dg.DagsterRunStatus.STARTED})
    assert launcher.check_run_worker_health(instance.get_run_by_id(run_id)).status == WorkerStatus.RUNNING
    assert launcher.terminate(run_id)
    assert _wait(instance, run_id, TERMINAL, timeout_s=30) == dg.DagsterRunStatus.CANCELED
    assert not launcher.terminate(run_id), "a finished run cannot be terminated again"


@pytest.mark.fault("SIGKILL of a warm run worker mid-run")
def test_a_killed_worker_is_reported_failed_to_run_monitoring(warm):
    instance, launcher = warm
    run_id = _launch(instance, launcher, warm_jobs.sleepy_job)
    _wait(instance, run_id, {dg.DagsterRunStatus.STARTED})
    os.kill(_worker_pid(instance, run_id), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (health := launcher.check_run_worker_health(instance.get_run_by_id(run_id))).status != WorkerStatus.FAILED:
        assert time.monotonic() < deadline, health
        time.sleep(0.1)
    assert "is gone" in health.msg


def test_a_preload_that_cannot_be_imported_fails_the_launch_naming_it(tmp_path):
    launcher = WarmRunLauncher(preload=["netassets_no_such_module"], watch=[])
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        with pytest.raises(DagsterLaunchFailedError, match="netassets_no_such_module"):
            _launch(instance, launcher, warm_jobs.probe_job, {"ops": {"report_worker": {"config": {"out": "x"}}}})


def test_a_preloaded_module_that_prints_at_import_does_not_answer_for_the_warm_process(warm, tmp_path):
    instance, launcher = warm
    (tmp_path / "chatty_at_import.py").write_text('print("hello from an import")\n')
    launcher.preload = (*launcher.preload, "chatty_at_import")
    assert _probe(instance, launcher, tmp_path, "chatty")["probe_version"] == 1


def test_the_default_preload_starts_no_thread():
    """The warm process forks; a thread started by an import, or by the GX warm-up validation,
    would be missing, holding its locks, in every run worker. Preloaded as the warm process does,
    with the modules of a default instance's classes."""
    probe = textwrap.dedent(f"""
        import threading
        import dagster as dg
        from netassets.core.run_launcher import instance_modules, preload
        with dg.instance_for_test() as instance:
            modules = instance_modules(instance.get_ref())
        preload([*{list(DEFAULT_PRELOAD)!r}, *modules])
        print(sorted(t.name for t in threading.enumerate()), len(modules))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GX_ANALYTICS_ENABLED": "false"})
    assert done.returncode == 0, done.stderr[-2000:]
    threads, modules = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert threads == "['MainThread']" and int(modules) >= 3


def test_a_run_worker_finds_its_way_to_its_first_step_already_imported(tmp_path, monkeypatch):
    """With the default preload and the instance's own classes, a forked worker imports almost
    nothing of its own: no storage, event log or migration module (355 modules without them)."""
    _write_probe(tmp_path, 1)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    launcher = WarmRunLauncher(preload=[*DEFAULT_PRELOAD, MODULE, "warm_probe"], watch=["warm_probe"])
    with dg.instance_for_test() as instance:
        launcher.register_instance(instance)
        try:
            report = _probe(instance, launcher, tmp_path, "preloaded")
        finally:
            launcher.dispose()
    imported = report["imported_after_fork"]
    assert imported is not None and len(imported) < 20, imported
    assert not [m for m in imported if m.startswith(
        ("dagster._core.storage", "alembic", "sqlalchemy", "great_expectations", "upath", "fsspec"))], imported


@pytest.mark.fault("SIGKILL of the warm process between two runs")
def test_a_dead_warm_process_is_replaced_at_the_next_launch(warm, tmp_path):
    instance, launcher = warm
    _probe(instance, launcher, tmp_path, "before")
    old = launcher._zygote.process
    old.kill()
    old.wait()
    after = _probe(instance, launcher, tmp_path, "after")
    assert after["great_expectations_preloaded"]
    assert launcher._zygote.process.pid != old.pid


def test_a_request_the_warm_process_cannot_read_is_refused_at_launch_and_it_serves_on(warm, tmp_path):
    """Refused before any fork, so the launch fails at once, not the run at the start timeout."""
    instance, launcher = warm
    _probe(instance, launcher, tmp_path, "before")
    zygote = launcher._zygote
    with pytest.raises(DagsterLaunchFailedError, match="refused: JSONDecodeError"):
        zygote.fork('{"not json')
    assert launcher._zygote is zygote and zygote.alive()
    _probe(instance, launcher, tmp_path, "after")
    assert launcher._zygote is zygote, "the refusal restarted the warm process"


def test_a_run_worker_retries_a_blocked_pool_claim_promptly_and_sleeps_until_then():
    """Dagster's own retry of a blocked pool claim starts at 1 s, and its executor spins until then;
    the warm launcher's workers retry from 0.1 s (growing as Dagster's do) and sleep. Run in a fresh
    interpreter: the change is made to Dagster's classes in the process that forks the workers."""
    probe = textwrap.dedent("""
        import json, time
        from dagster._core.execution.plan import instance_concurrency_context as claims
        before = [claims._calculate_timeout_interval(None, n) for n in range(3)]
        from netassets.core.run_launcher import claim_pool_slots_promptly
        claim_pool_slots_promptly()
        after = [claims._calculate_timeout_interval(None, n) for n in range(3)]
        context = object.__new__(claims.InstanceConcurrencyContext)
        context._pending_claims, context._pending_timeouts = {"step"}, {"step": time.time() + 0.5}
        waiting = context.interval_to_next_pending_claim_check()
        context._pending_timeouts = {"step": time.time() - 0.5}
        overdue = context.interval_to_next_pending_claim_check()
        print(json.dumps({"before": before, "after": after, "waiting": waiting, "overdue": overdue}))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["before"][0] == 1  # Dagster's: a second before the first retry (if this changes, so may the fix)
    assert [round(x, 3) for x in outcome["after"]] == [0.1, 0.2, 0.31]
    assert 0.3 < outcome["waiting"] <= 0.5  # sleeps until the next retry instead of returning <= 0
    assert outcome["overdue"] == 0.0


def test_schema_revisions_are_checked_against_scripts_loaded_once():
    """The warm process loads alembic's migration scripts once for Dagster's revision checks and
    stamps: the same scripts object every time, the same head as a fresh load, a real instance
    still opens (its storages check their revisions through it) and a run's new event-log file
    is stamped with the head. In a fresh interpreter, as the change
    is made to Dagster's module in the process that forks the workers."""
    probe = textwrap.dedent("""
        import json
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        import dagster as dg
        from dagster._core.storage import sql
        config = Config()
        config.set_main_option("script_location", sql.ALEMBIC_SCRIPTS_LOCATION)
        fresh_head = ScriptDirectory.from_config(config).as_revision_number("head")
        from netassets.core.run_launcher import load_migration_scripts_once
        load_migration_scripts_once()
        import alembic.command, sqlite3
        first, second = sql.ScriptDirectory.from_config(config), sql.ScriptDirectory.from_config(config)
        with dg.instance_for_test() as instance:
            result = dg.materialize([dg.asset(name="noop")(lambda: None)], instance=instance)
            opened = instance.get_run_by_id(result.run_id) is not None
            # the run's own event-log file, made and stamped by this run: stamped with the head
            shard = instance.event_log_storage.path_for_shard(result.run_id)
            (stamped,) = sqlite3.connect(shard).execute("SELECT version_num FROM alembic_version").fetchone()
        print(json.dumps({"same": first is second is alembic.command.ScriptDirectory.from_config(config),
                          "head_matches": first.as_revision_number("head") == fresh_head,
                          "opened": opened and result.success, "stamped_head": stamped == fresh_head}))
    """)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"same": True, "head_matches": True, "opened": True,
                                                               "stamped_head": True}


def test_a_pid_taken_by_another_process_after_the_worker_died_is_neither_reported_running_nor_signalled(warm):
    """The warm process lets the kernel reap its workers at once, so a dead worker's pid is free
    for the next process: the tag holds the worker's start time too, and a process with the same
    pid but another start time is not the worker."""
    from netassets.core.run_launcher import _process_stat

    instance, launcher = warm
    origin = ReconstructableJob.for_module(MODULE, warm_jobs.sleepy_job.name).get_python_origin()
    run = instance.create_run_for_job(job_def=warm_jobs.sleepy_job, run_config={}, job_code_origin=origin)
    stranger = subprocess.Popen(["sleep", "60"])  # the process that got the dead worker's pid
    try:
        started = _process_stat(stranger.pid)[1]
        instance.add_run_tags(run.run_id, {PID_TAG: f"{stranger.pid}:{started}"})  # control: it is the worker
        assert launcher.check_run_worker_health(instance.get_run_by_id(run.run_id)).status == WorkerStatus.RUNNING
        instance.add_run_tags(run.run_id, {PID_TAG: f"{stranger.pid}:{int(started) - 1}"})
        assert launcher.check_run_worker_health(instance.get_run_by_id(run.run_id)).status == WorkerStatus.FAILED
        assert not launcher.terminate(run.run_id)
        time.sleep(0.2)
        assert stranger.poll() is None, "a process that is not the run's worker was signalled"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_code_location_in_another_virtual_environment_is_refused(warm, tmp_path):
    """A venv's python links to the base interpreter: the same binary, other packages."""
    instance, launcher = warm
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=120)
    origin = ReconstructableJob.for_module(MODULE, warm_jobs.sleepy_job.name).get_python_origin()
    origin = origin._replace(repository_origin=origin.repository_origin._replace(
        executable_path=str(tmp_path / "venv" / "bin" / "python")))
    run = instance.create_run_for_job(job_def=warm_jobs.sleepy_job, run_config={}, job_code_origin=origin)
    with pytest.raises(DagsterLaunchFailedError, match="forks run workers from this daemon's interpreter"):
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))


def test_the_warm_process_is_replaced_after_a_rename_an_old_copy_put_back_or_a_dotenv_edit(tmp_path, monkeypatch):
    from netassets.core.run_launcher import source_fingerprint

    package = tmp_path / "fingerprinted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    before = source_fingerprint(["fingerprinted"])
    (package / "a.py").rename(package / "_a.py")  # keeps its mtime; the count stays
    renamed = source_fingerprint(["fingerprinted"])
    assert renamed != before
    old = package / "_a.py"
    old_mtime = old.stat().st_mtime_ns
    old.write_text("X = 2\n")
    edited = source_fingerprint(["fingerprinted"])
    old.write_text("X = 1\n")
    os.utime(old, ns=(old_mtime, old_mtime))  # an older copy put back with its own mtime (cp -p)
    assert source_fingerprint(["fingerprinted"]) not in (renamed, edited)
    settled = source_fingerprint(["fingerprinted"])
    (tmp_path / ".env").write_text("NETASSETS_ES_USER=reader\n")
    assert source_fingerprint(["fingerprinted"]) != settled


def test_what_the_code_reads_at_import_comes_from_the_current_dotenv(warm, tmp_path, monkeypatch):
    """As a code server re-reads .env at each reload, the warm process reads it when it starts:
    an edit to .env replaces it, and the next run imported the code with the new value."""
    instance, launcher = warm
    monkeypatch.chdir(tmp_path)
    (tmp_path / "warm_probe" / "__init__.py").write_text('import os\nVERSION = os.environ.get("WARM_PROBE_VERSION")\n')
    (tmp_path / ".env").write_text("WARM_PROBE_VERSION=from-dotenv\n")
    assert _probe(instance, launcher, tmp_path, "first")["probe_version"] == "from-dotenv"
    (tmp_path / ".env").write_text("WARM_PROBE_VERSION=edited\n")
    assert _probe(instance, launcher, tmp_path, "second")["probe_version"] == "edited"
