"""StepChecks: a step's GX suites on a worker thread that imports GX while the step works."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import dagster as dg
import pytest

from netassets.core.expectations import StepChecks

# A fresh interpreter (the test process may have imported GX already): which thread imports GX,
# and what two suites submitted in order give back.
FRESH_STEP = """
import json, sys, threading
import pandas as pd
import dagster as dg
from netassets.core.expectations import StepChecks, gx_step_check, gxe

importers = []
def audit(event, args):
    if event == "import" and args[0] == "great_expectations":
        importers.append(threading.current_thread().name)
sys.addaudithook(audit)

spec = lambda name: dg.AssetCheckSpec(name=name, asset="probe")
frame = pd.DataFrame({"a": [1, 2, 3]})
with StepChecks() as checks:
    checks.submit(lambda: gx_step_check(spec("passes"), frame, [gxe.ExpectColumnValuesToBeBetween(column="a", min_value=0, max_value=3)], "k"))
    checks.submit(lambda: gx_step_check(spec("fails"), frame, [gxe.ExpectColumnValuesToBeBetween(column="a", min_value=2, max_value=3)], "k"))
    results = list(checks.results())
print(json.dumps({"importers": sorted(set(importers)), "step_thread": threading.current_thread().name,
                  "results": [[r.check_name, r.passed, r.metadata["evaluated_expectations"].value] for r in results]}))
"""


def test_gx_is_imported_on_the_worker_and_results_come_in_submission_order():
    done = subprocess.run([sys.executable, "-c", FRESH_STEP], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["importers"] == ["gx-checks_0"], outcome  # never the step's own thread
    assert outcome["step_thread"] == "MainThread"
    assert outcome["results"] == [["passes", True, 1], ["fails", False, 1]]


def test_a_suite_that_raises_raises_from_results():
    def broken() -> dg.AssetCheckResult:
        raise ValueError("frame could not be built: column 'x' missing")

    with StepChecks() as checks:
        checks.submit(broken)
        with pytest.raises(ValueError, match="column 'x' missing"):
            list(checks.results())


def test_after_a_failed_step_suites_not_yet_started_never_run():
    started, release, ran = threading.Event(), threading.Event(), []

    def first() -> dg.AssetCheckResult:
        started.set()
        release.wait(timeout=30)
        return dg.AssetCheckResult(passed=True)

    with pytest.raises(RuntimeError, match="bad file"):
        with StepChecks() as checks:
            checks.submit(first)
            checks.submit(lambda: ran.append("second"))
            assert started.wait(timeout=120)  # the worker is busy with the first suite
            raise RuntimeError("bad file")  # the step fails: __exit__ must not wait for the worker
    release.set()
    checks._worker.shutdown(wait=True)
    assert ran == []
