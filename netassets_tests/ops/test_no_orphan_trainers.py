"""No torchrun worker outlives its run, whichever level is SIGKILLed: the torchrun agent, the
step process that launched it, or the run's whole process group (torchrun puts each worker in a
session of its own, so a group kill alone never reaches them).

Real processes throughout: a real ``dagster`` materialisation in its own process (the step),
which launches real ``torchrun`` with 2 sleeping workers through ``launch_torchrun``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

STEP = textwrap.dedent('''
    import sys, dagster as dg
    from netassets.core.torchrun import launch_torchrun

    @dg.asset
    def sleepy(context: dg.AssetExecutionContext):
        return launch_torchrun(context, "netassets_tests.ops.sleepy_trainer", [sys.argv[1]], nproc=2).get_materialize_result()

    dg.materialize([sleepy])
''')


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped running; only its exit status is left


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.fault("SIGKILL of a training run: its torchrun agent, its step, or its whole process group")
@pytest.mark.parametrize("level", ["torchrun_agent", "step_process", "process_group"])
def test_every_worker_dies_with_its_launcher(tmp_path: Path, level: str):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dh"), "PYTHONPATH": str(Path.cwd())}
    (tmp_path / "dh").mkdir()
    step = subprocess.Popen([sys.executable, "-c", STEP, str(tmp_path)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pid_files = _wait_for(lambda: sorted(tmp_path.glob("worker-*.pid")) if len(list(tmp_path.glob("worker-*.pid"))) == 2 else None,
                              90, "both workers to start")
        workers = [int(_wait_for(p.read_text, 5, p.name)) for p in pid_files]
        agents = [c for c in _children(step.pid) if any(w in _children(c) for w in workers)]
        assert len(agents) == 1, f"expected one torchrun agent between the step and its workers, got {agents}"
        assert all(_alive(w) for w in workers)
        if level == "torchrun_agent":
            os.kill(agents[0], signal.SIGKILL)
        elif level == "step_process":
            os.kill(step.pid, signal.SIGKILL)
        else:
            os.killpg(step.pid, signal.SIGKILL)
        _wait_for(lambda: not any(_alive(p) for p in workers + agents), 10, f"workers {workers} to die after killing the {level}")
    finally:
        for pid in [step.pid]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        step.wait(timeout=30)
