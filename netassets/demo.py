"""`netassets demo`: sample data for every pipeline, materialised end to end with its checks.

Uses the embedded default: a DuckDB file under NETASSETS_HOME and a Dagster instance under
$NETASSETS_HOME/dagster_home (unless DAGSTER_HOME is set), so `dagster dev` afterwards shows
every run, materialisation and check result. perfSONAR runs against an osmem-server (a real
OpenSearch-compatible server) that the demo starts, seeds and stops.

Each pipeline's description (``netassets/defs/<name>/pipeline.py``) says how to prepare its
sample data and which stages to run: ingest every landed partition, train its models on them
(small configs: this is a demo, benchmarks train at full size), then score a partition. The
terminal shows one line per stage with a counter and a summary table at the end; Dagster's
own event log goes to ``$NETASSETS_HOME/demo-events.log``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import dagster as dg

from netassets.core.pipeline import DemoStage, Pipeline
from netassets.core.settings import INSTANCE_SETTINGS, netassets_home
from netassets.pipelines import all_pipelines, pipeline

# Dagster's console logger prints every event at DEBUG; the demo keeps the terminal for its
# own lines and writes the events to a file instead.
QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
VERDICT_CHECK = "beats_strongest_baseline"


@dataclass
class Tally:
    name: str
    runs: int = 0
    ok: int = 0
    checks: int = 0
    checks_passed: int = 0
    seconds: float = 0.0
    verdicts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "ok" if self.runs and self.ok == self.runs else "FAILED"


def _instance_home(home: Path) -> Path:
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster_home")
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        shutil.copy(INSTANCE_SETTINGS, dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def _failure_reason(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            user = data.user_failure_data
            text = (user.description if user is not None and user.description else None) or data.error.message
            return f"{event.step_key}: {text.strip().splitlines()[0]}"
    return "run failed"


def _interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether Ctrl-C ended the run: in a step, or before or after its steps (the run's failure)."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
        elif event.is_run_failure and event.event_specific_data is not None:
            error = event.event_specific_data.error
        else:
            continue
        while error is not None:
            if error.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt"):
                return True
            error = error.cause
    return False


def _write_events(log: TextIO, instance: dg.DagsterInstance, run_id: str) -> None:
    for record in instance.all_logs(run_id):
        stamp = dt.datetime.fromtimestamp(record.timestamp, dt.timezone.utc).strftime("%H:%M:%S")
        kind = record.dagster_event.event_type_value if record.dagster_event else "LOG"
        log.write(f"{stamp} {run_id[:8]} {record.step_key or '-'} {kind} {record.message}\n")


class Progress:
    """One line per stage: rewritten in place on a terminal, printed once when piped."""

    def __init__(self, stream: TextIO = sys.stdout):
        self.stream, self.live = stream, stream.isatty()

    def update(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    def done(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = width * done // max(total, 1)
    return "#" * filled + "." * (width - filled)


def _run_stage(described: Pipeline, index: int, stage: DemoStage, job: dg.JobDefinition, keys: list[str | None],
               data_configs: dict[str, dict], instance: dg.DagsterInstance, tally: Tally, log: TextIO,
               progress: Progress) -> None:
    label = f"[{described.name}] {index + 1}/{len(described.demo_stages)} {', '.join(stage.assets)}"
    stage_ok = 0
    for n, key in enumerate(keys):
        progress.update(f"{label}  {_bar(n, len(keys))} {n}/{len(keys)}")
        ops = {**stage.run_config.get("ops", {}),
               **{op: cfg for op, cfg in data_configs.get(key or "", {}).get("ops", {}).items() if op in stage.assets}}
        result = job.execute_in_process(partition_key=key, run_config={**QUIET_LOGGERS, **({"ops": ops} if ops else {})},
                                        instance=instance, raise_on_error=False)
        _write_events(log, instance, result.run_id)
        if _interrupted(result):  # Dagster turned Ctrl-C into a failed step: stop here, not at the next run
            raise KeyboardInterrupt
        tally.runs += 1
        stage_ok += result.success
        if not result.success:
            tally.problems.append(f"run {result.run_id[:8]} {key or ''}: {_failure_reason(result)}")
        for evaluation in result.get_asset_check_evaluations():
            tally.checks += 1
            tally.checks_passed += evaluation.passed
            name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            if evaluation.check_name == VERDICT_CHECK:
                verdict = evaluation.metadata.get("verdict")
                tally.verdicts.append(f"{evaluation.asset_key.to_user_string()} {verdict.value if verdict else evaluation.description}")
            elif not evaluation.passed:
                tally.problems.append(f"check {name} {key or ''}: {(evaluation.description or 'failed').splitlines()[0]}")
    tally.ok += stage_ok
    mark = "ok" if stage_ok == len(keys) else f"{len(keys) - stage_ok} FAILED"
    progress.done(f"{label}  {_bar(len(keys), len(keys))} {len(keys)}/{len(keys)} runs {mark}")


def _summary(tallies: list[Tally], home: Path, dagster_home: Path, events: Path) -> str:
    lines = ["", f"{'pipeline':<12} {'status':<7} {'runs':>7} {'checks passed':>14} {'seconds':>8}"]
    for t in tallies:
        lines.append(f"{t.name:<12} {t.status:<7} {f'{t.ok}/{t.runs}':>7} {f'{t.checks_passed}/{t.checks}':>14} {t.seconds:>8.0f}")
    verdicts = [(t.name, v) for t in tallies for v in t.verdicts]
    if verdicts:
        lines += ["", "model vs strongest baseline (held-out test rows):"]
        lines += [f"  {name:<11} {verdict}" for name, verdict in verdicts]
    problems = [(t.name, p) for t in tallies for p in t.problems]
    if problems:
        lines += ["", "needs a look:"] + [f"  {name:<11} {problem}" for name, problem in problems]
    lines += [
        "",
        f"warehouse:  {home / 'warehouse.duckdb'}",
        f"landing:    {home / 'landing'}",
        f"models:     {home / 'models'}",
        f"event log:  {events}",
        f"browse:     DAGSTER_HOME={dagster_home} NETASSETS_HOME={home} dagster dev",
    ]
    return "\n".join(lines)


def _homes(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.home:
        os.environ["NETASSETS_HOME"] = str(Path(args.home).expanduser().resolve())
    home = netassets_home()
    home.mkdir(parents=True, exist_ok=True)
    return home, _instance_home(home)


def materialise(selected: list[Pipeline], home: Path, stack: ExitStack) -> tuple[list[Tally], Path]:
    """Prepare every selected pipeline's sample data and run its demo stages; servers it starts
    (perfSONAR's osmem-server) stay up until ``stack`` closes."""
    for category in (dg.BetaWarning, dg.PreviewWarning):
        warnings.filterwarnings("ignore", category=category)
    from netassets.definitions import defs

    jobs = {
        (p.name, i): dg.define_asset_job(f"demo_{p.name}_{i}", selection=list(stage.assets))
        for p in selected for i, stage in enumerate(p.demo_stages)
    }
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=list(jobs.values())))
    events = home / "demo-events.log"
    progress = Progress()
    tallies: list[Tally] = []
    with dg.DagsterInstance.get() as instance, events.open("w") as log:
        for described in selected:
            tally = Tally(described.name)
            tallies.append(tally)
            started = time.perf_counter()
            progress.update(f"[{described.name}] preparing sample data")
            data = described.prepare_demo(instance, stack)
            progress.done(f"[{described.name}] sample data: {len(data.partition_keys)} partitions")
            for i, stage in enumerate(described.demo_stages):
                job = resolved.resolve_job_def(jobs[(described.name, i)].name)
                _run_stage(described, i, stage, job, stage.keys(data), data.run_configs, instance, tally, log, progress)
            tally.seconds = time.perf_counter() - started
    return tallies, events


def run(args: argparse.Namespace) -> None:
    home, dagster_home = _homes(args)
    selected = [pipeline(name) for name in args.pipelines] or list(all_pipelines())
    with ExitStack() as stack:
        tallies, events = materialise(selected, home, stack)
    print(_summary(tallies, home, dagster_home, events), flush=True)
    failed = [t.name for t in tallies if t.status != "ok"]
    if failed:
        raise SystemExit(f"demo failed for: {', '.join(failed)}")


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # the same orderly stop as Ctrl-C


def up(args: argparse.Namespace) -> None:
    """`netassets up`: the demo's data and runs, then `dagster dev` on them until Ctrl-C.

    perfSONAR's osmem-server stays up for the UI's sensor and runs (NETASSETS_ES_HOSTS is passed
    to `dagster dev`); Ctrl-C (or SIGTERM) stops the server, the UI and the search cluster together.
    """
    import signal

    from netassets.devserver import DagsterDev

    # From the start: a SIGTERM during the demo must still close the search server, and one while
    # `dagster dev` loads must stop its process group (its own session, not ours). Set again once
    # the UI is up: the in-process runs of the demo replace the handler (dagster's interrupt capture).
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    home, dagster_home = _homes(args)
    selected = list(all_pipelines())
    started = time.perf_counter()
    with ExitStack() as stack:
        try:
            if args.no_materialise:
                with dg.DagsterInstance.get() as instance:
                    for described in selected:
                        described.prepare_demo(instance, stack)
                        print(f"[{described.name}] sample data landed, partitions registered", flush=True)
            else:
                tallies, events = materialise(selected, home, stack)
                print(_summary(tallies, home, dagster_home, events), flush=True)
            env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "NETASSETS_HOME": str(home),
                   "DAGSTER_DISABLE_TELEMETRY": "1", "GX_ANALYTICS_ENABLED": "false"}
            server = DagsterDev.launch(home / "dagster_dev", env, host=args.host, port=args.port)
            stack.callback(server.stop)
            server.wait_ready(timeout_s=300)
            print(f"\nDagster UI: {server.url}  (ready {time.perf_counter() - started:.0f} s after start; "
                  f"log {server.log_path}); Ctrl-C stops everything", flush=True)
            signal.signal(signal.SIGTERM, _stop_on_sigterm)
            while server.process.poll() is None:
                time.sleep(1.0)
            raise SystemExit(f"dagster dev exited with {server.process.returncode}; see {server.log_path}")
        except KeyboardInterrupt:
            print("stopping dagster dev and the search cluster", flush=True)
