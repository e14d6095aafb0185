"""Run workers forked from a warm process instead of started cold: `WarmRunLauncher`.

Dagster's code server starts every run worker with multiprocessing "spawn" (hard-coded in
``dagster/_grpc/server.py``): each run imports dagster, the code location and, for its checks,
Great Expectations again: ~2 s to start plus ~3 s of GX import, against 0.5 s of work for a
small LENS partition (``bench/backfill.py``). This launcher keeps one *zygote* per daemon: a process that has imported
those modules once and then forks a run worker per run. The worker executes exactly what
``dagster api execute_run`` executes (the entry point of Dagster's Docker and Kubernetes launchers),
so runs, their events, .env injection and interrupts behave as they do under the default launcher.

- The zygote is replaced when a source file of a ``watch`` package, or the working directory's
  .env or pyproject.toml, changes, so a run after an edit (and a "Reload definitions" in the UI)
  runs the edited code; it reads .env when it starts, as a code server does at each reload.
- The run worker's pid and start time are a run tag: run monitoring asks whether it is alive (a
  SIGKILLed worker fails its run and frees its pool slots), and termination sends it SIGINT, the
  interrupt Dagster's own code server sends; a later process given the same pid is neither.
- Its workers retry a blocked pool claim after 0.1 s, not Dagster's 1 s, and sleep rather than
  spin until then (``claim_pool_slots_promptly``): a backfill's next run takes the warehouse slot
  as soon as the previous step lets it go. They check and stamp their storages' schema revisions
  against migration scripts loaded once (``load_migration_scripts_once``).
- One machine and one environment only: the run worker is a local process of the daemon's
  interpreter, so a code location of another interpreter or virtual environment is refused at
  launch. Deployments whose runs start elsewhere keep Dagster's launchers
  (deploy/dagster_postgres.yaml).

Configured in deploy/dagster.yaml:

    run_launcher:
      module: netassets.core.run_launcher
      class: WarmRunLauncher
      config: {preload: [...], watch: [...]}
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster._check as check
from dagster import Field
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._core.secrets.env_file import get_env_var_dict
from dagster._core.storage.dagster_run import DagsterRun
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, deserialize_value, serialize_value

# What a netassets run worker imports before its first step: the code location, Dagster's run
# entry point, GX for the checks (more than the code location itself), and the modules Dagster
# imports on the way from a run's start to its first step (a fork that had none of them imported
# 355 modules, 0.3 s of a 1.1 s run). An entry "module:function" also calls the function once:
# warm_up validates a small suite, so each fork's first validation runs at full speed (0.24 s
# against 0.11 s for LENS's two suites). The modules of the instance's configured classes
# (storage, compute logs, coordinator) are added by the launcher: they depend on dagster.yaml.
DEFAULT_PRELOAD = (
    "netassets.definitions", "dagster._cli.api", "great_expectations", "netassets.core.expectations:warm_up",
    "dagster._core.instance.factory", "dagster._core.execution.api", "dagster._core.executor.in_process",
    "dagster._core.execution.plan.active", "dagster._core.storage.migration.utils", "dagster._core.workspace.autodiscovery",
    "dagster._utils.test.definitions", "dagster._core.storage.fs_io_manager", "upath.implementations.local", "pyarrow.dataset",
)
DEFAULT_WATCH = ("netassets",)
PID_TAG = "netassets/run_worker_pid"
# In the warm process (and so in every worker it forks): the modules it had loaded when it began
# serving. What a run worker imported itself is sys.modules less these.
PRELOADED: frozenset[str] = frozenset()


def source_fingerprint(packages: Sequence[str]) -> int:
    """A hash of every .py file of ``packages`` (found without importing them) and of the working
    directory's .env and pyproject.toml: path, size, mtime, ctime and inode. A changed, added,
    removed or renamed file changes it, and so does an older copy put back with its old mtime
    (``cp -p``): the ctime cannot be set back. .env holds what the code location reads at import
    (credentials present or not, schedules' crons), pyproject.toml where its definitions are."""
    paths: list[Path] = [Path.cwd() / ".env", Path.cwd() / "pyproject.toml"]
    for name in packages:
        spec = importlib.util.find_spec(name)
        roots = list(spec.submodule_search_locations or []) if spec else []
        if spec and spec.origin and not roots:
            roots = [spec.origin]
        for root in roots:
            paths.extend(Path(root).rglob("*.py") if Path(root).is_dir() else [Path(root)])
    states = []
    for path in sorted(paths):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed while we walked, or no .env
            continue
        states.append((str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
    return hash(tuple(states))


def _process_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks since boot) of ``pid``; None when there is no such
    process. A zombie ('Z') is a worker that has died and not been reaped yet."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return "?", ""
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def _worker_alive(worker: tuple[int, str]) -> bool:
    """Whether the run worker (pid, start time) still runs. The start time tells it from a later
    process given the same pid once the worker died (the warm process lets the kernel reap its
    workers at once, so a dead worker's pid is free for reuse): that one is not asked about, and
    never signalled."""
    pid, started = worker
    stat = _process_stat(pid)
    return stat is not None and stat[0] != "Z" and (not started or not stat[1] or stat[1] == started)


def instance_modules(ref: InstanceRef) -> tuple[str, ...]:
    """The modules of the classes an instance is configured with (its storages, compute log
    manager, run coordinator, launcher...), which every run worker imports to make its instance."""
    configured = (ref.local_artifact_storage_data, ref.storage_data, ref.run_storage_data, ref.event_storage_data,
                  ref.schedule_storage_data, ref.compute_logs_data, ref.scheduler_data, ref.run_coordinator_data,
                  ref.run_launcher_data, ref.secrets_loader_data)
    return tuple(sorted({data.module_name for data in configured if data is not None}))


def preload(entries: Sequence[str]) -> None:
    """Import each entry's module and, for "module:function", call the function: what the warm
    process does once before it forks its first worker."""
    for entry in entries:
        module_name, _, function = entry.partition(":")
        module = importlib.import_module(module_name)
        if function:
            getattr(module, function)()


def _environment(executable: str) -> str:
    """Where an interpreter's packages come from: its virtual environment (the folder with
    pyvenv.cfg above its bin/, found without resolving the link to the base interpreter, which
    every venv's python is), else the interpreter itself."""
    folder = Path(os.path.abspath(executable)).parent.parent
    return str(folder) if (folder / "pyvenv.cfg").is_file() else os.path.realpath(executable)


class _WarmProcessGone(DagsterLaunchFailedError):
    """The warm process died (or closed its pipe) before it answered: worth one fresh start."""


class _Zygote:
    """The warm process: started with the preload list, it answers each request line (a
    serialised ExecuteRunArgs) with the pid of the run worker it forked for it, or with
    ``refused: <why>`` for a request it cannot read (and forks nothing)."""

    def __init__(self, entries: Sequence[str], watch: Sequence[str]):
        self.fingerprint = source_fingerprint(watch)
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__, *entries],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            self.close()
            raise DagsterLaunchFailedError(f"the warm run-worker process could not preload {list(entries)}: "
                                           f"{ready or 'it exited'} (its traceback is in the daemon's log)")

    def fork(self, request: str) -> int:
        self.process.stdin.write(request + "\n")
        answer = self.process.stdout.readline().strip()
        if not answer:
            raise _WarmProcessGone("the warm run-worker process exited before it forked a worker")
        if not answer.isdigit():
            raise DagsterLaunchFailedError(f"the warm run-worker process did not fork a worker: {answer}")
        return int(answer)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        # Closing stdin ends its loop; the run workers it forked are processes of their own and run on.
        try:
            self.process.stdin.close()
        except OSError:  # it had died: the pipe is broken
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run as a fork of a process that has already imported the code location."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, preload: Sequence[str] = DEFAULT_PRELOAD,
                 watch: Sequence[str] = DEFAULT_WATCH):
        self._inst_data = inst_data
        self.preload, self.watch = tuple(preload), tuple(watch)
        self._zygote: _Zygote | None = None
        self._lock = threading.Lock()  # the daemon may launch from several threads
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {
            "preload": Field([str], is_required=False, default_value=list(DEFAULT_PRELOAD),
                             description="modules the warm process imports once for every run; "
                                         "'module:function' also calls the function once"),
            "watch": Field([str], is_required=False, default_value=list(DEFAULT_WATCH),
                           description="packages whose changed source files replace the warm process"),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> WarmRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def _warm(self) -> _Zygote:
        zygote = self._zygote
        if zygote is not None and (not zygote.alive() or zygote.fingerprint != source_fingerprint(self.watch)):
            zygote.close()
            zygote = self._zygote = None
        if zygote is None:
            modules = [m for m in instance_modules(self._instance.get_ref()) if m not in self.preload]
            zygote = self._zygote = _Zygote([*self.preload, *modules], self.watch)
        return zygote

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = check.not_none(run.job_code_origin, f"run {run.run_id} has no code origin to execute")
        if _environment(origin.executable_path) != _environment(sys.executable):
            raise DagsterLaunchFailedError(
                f"WarmRunLauncher forks run workers from this daemon's interpreter ({sys.executable}); the code "
                f"location of run {run.run_id} runs in {origin.executable_path}. Use Dagster's DefaultRunLauncher for it.")
        request = serialize_value(ExecuteRunArgs(job_origin=origin, run_id=run.run_id,
                                                 instance_ref=self._instance.get_ref()))
        with self._lock:
            zygote = self._warm()
            try:
                pid = zygote.fork(request)
            except (OSError, _WarmProcessGone):  # it died since it was last asked: one fresh start
                zygote.close()
                self._zygote = None
                pid = self._warm().fork(request)
        stat = _process_stat(pid)
        self._instance.add_run_tags(run.run_id, {PID_TAG: f"{pid}:{stat[1] if stat else ''}"})

    def _worker(self, run: DagsterRun) -> tuple[int, str] | None:
        """The run worker's (pid, start time) from its tag ("pid:start"; "pid" alone from an older
        launcher, whose start time is not checked)."""
        pid, _, started = (run.tags.get(PID_TAG) or "").partition(":")
        return (int(pid), started) if pid.isdigit() else None

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if not run or run.is_finished:
            return False
        worker = self._worker(run)
        self._instance.report_run_canceling(run)
        if worker is None or not _worker_alive(worker):
            self._instance.report_engine_event("Could not terminate the run: its run worker is not running.", run,
                                               cls=self.__class__)
            return False
        os.kill(worker[0], signal.SIGINT)  # Dagster's interrupt: the run stops between events and ends CANCELED
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = self._worker(run)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"run {run.run_id} has no {PID_TAG} tag")
        if not _worker_alive(worker):
            return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker (pid {worker[0]}) is gone")
        return CheckRunHealthResult(WorkerStatus.RUNNING)

    def dispose(self) -> None:
        with self._lock:
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None


# Dagster 1.13's executor retries a step's blocked pool claim 1 s later (then 1.1 s, 1.21 s, ...)
# and, until then, is told to sleep min(0, ...) <= 0 seconds: it spins (dagster-io/dagster#20367,
# closed unmerged). A LENS ingest step holds the warehouse's one slot ~0.3 s, so the run queued
# behind it (deploy/dagster.yaml's op_granularity_run_buffer) found the slot free ~0.7 s before it
# asked again. The run workers forked here retry first after 0.1 s, growing as Dagster's retries
# grow, and sleep until then.
POOL_CLAIM_FIRST_RETRY_S = 0.1


def claim_pool_slots_promptly() -> None:
    """In this process, blocked pool claims are retried from POOL_CLAIM_FIRST_RETRY_S and the
    executor sleeps, not spins, until the next retry."""
    from dagster._core.execution.plan import instance_concurrency_context as claims

    claims.INITIAL_INTERVAL_VALUE = POOL_CLAIM_FIRST_RETRY_S

    def interval_to_next_pending_claim_check(self) -> float:
        if not self._pending_claims:
            return 0.0
        return max(0.0, min(self._pending_timeouts.values(), default=0.0) - time.time())

    claims.InstanceConcurrencyContext.interval_to_next_pending_claim_check = interval_to_next_pending_claim_check


def load_migration_scripts_once() -> None:
    """Dagster checks each SQLite storage's schema revision when a run worker makes its instance,
    and again for the run's own event-log file, which it then stamps with the head revision;
    each check and each stamp loaded alembic's ~40 migration scripts afresh (~25 ms and ~20 ms).
    Both lookups of them (``check_alembic_revision``, through ``dagster._core.storage.sql``'s
    name ``ScriptDirectory``, and alembic's own commands, stamp among them, through
    ``alembic.command``'s) are given scripts loaded once, here, in the process that forks the
    workers. The scripts are read-only files; a run worker lives for one run."""
    import alembic.command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from dagster._core.storage import sql

    loaded: dict[str, ScriptDirectory] = {}

    class LoadedScripts:
        @staticmethod
        def from_config(config: Config) -> ScriptDirectory:
            location = config.get_main_option("script_location")
            if location not in loaded:
                loaded[location] = ScriptDirectory.from_config(config)
            return loaded[location]

    sql.ScriptDirectory = alembic.command.ScriptDirectory = LoadedScripts
    config = Config()
    config.set_main_option("script_location", sql.ALEMBIC_SCRIPTS_LOCATION)
    LoadedScripts.from_config(config).as_revision_number("head")  # reads every revision now


def prepare_warm_process(entries: Sequence[str]) -> None:
    """What the warm process does before it forks its first run worker: preload ``entries``,
    and the two in-process fixes of Dagster's run path above (``bench.lens_clean``'s warm process
    is prepared by this too)."""
    preload(entries)
    claim_pool_slots_promptly()
    load_migration_scripts_once()


def _execute_run(args: ExecuteRunArgs) -> int:
    """In the forked run worker: what `dagster api execute_run` does with the same arguments."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._cli.utils import get_instance_for_cli
    from dagster._utils.interrupts import capture_interrupts

    with capture_interrupts(), get_instance_for_cli(instance_ref=args.instance_ref) as instance:
        return _execute_run_command_body(args.run_id, instance, lambda event: None,
                                         set_exit_code_on_failure=bool(args.set_exit_code_on_failure))


def _serve(entries: Sequence[str]) -> None:
    """The zygote's loop. It stays single-threaded (nothing it imports starts a thread; checked by
    the tests), so forking it is safe."""
    # The kernel reaps finished workers (no zombies to wait for); each worker restores the default.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Ctrl-C on `dagster dev` reaches its whole process group: the running workers stop, while the
    # zygote waits for the daemon to close its pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The replies get a descriptor of their own, and the warm process's stdout goes to the
    # daemon's log: a preloaded module that prints at import must not answer for it.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        # As a code server does at each reload: the working directory's .env over the environment
        # the daemon started with, so that what the code location reads at import is current.
        os.environ.update(get_env_var_dict(os.getcwd()))
        prepare_warm_process(entries)
    except BaseException as error:  # noqa: BLE001  (any import failure is reported, not raised)
        traceback.print_exc(file=sys.stderr)
        replies.write(f"error: {type(error).__name__}: {error}".replace("\n", " ") + "\n")
        replies.flush()
        sys.exit(1)
    global PRELOADED
    PRELOADED = frozenset(sys.modules)
    replies.write("ready\n")
    replies.flush()
    for line in sys.stdin:
        try:  # read before forking: a worker that cannot read its run would leave it STARTING until a timeout
            args = deserialize_value(line.strip(), ExecuteRunArgs)
        except Exception as error:  # noqa: BLE001  (any unreadable request is refused, the loop goes on)
            replies.write(f"refused: {type(error).__name__}: {error}"[:500].replace("\n", " ") + "\n")
            replies.flush()
            continue
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                replies.close()  # the warm process's, not the worker's
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its own children (torchrun) are waited for
                signal.signal(signal.SIGINT, signal.default_int_handler)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.close(devnull)
                os.dup2(2, 1)  # the requests pipe is the zygote's; the worker prints to the daemon's log
                code = _execute_run(args)
            except BaseException:  # noqa: BLE001  (a worker must never return into the zygote's loop)
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        replies.write(f"{pid}\n")
        replies.flush()


if __name__ == "__main__":
    _serve(sys.argv[1:])
