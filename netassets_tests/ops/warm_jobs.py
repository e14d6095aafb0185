"""Jobs for the WarmRunLauncher tests: one reports what its run worker had imported, one sleeps."""

import json
import os
import sys
import time

import dagster as dg


class ProbeConfig(dg.Config):
    out: str


@dg.op
def report_worker(config: ProbeConfig) -> None:
    import warm_probe  # a package the test writes and edits in a temporary folder

    preloaded = getattr(sys.modules["__main__"], "PRELOADED", None)  # the warm process's, inherited by its fork
    with open(config.out, "w") as f:
        json.dump({"pid": os.getpid(), "great_expectations_preloaded": "great_expectations" in sys.modules,
                   "probe_version": warm_probe.VERSION,
                   "imported_after_fork": None if preloaded is None else sorted(set(sys.modules) - preloaded)}, f)


@dg.op
def sleep_a_while() -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.1)


@dg.job(executor_def=dg.in_process_executor)  # as netassets.definitions runs its steps
def probe_job():
    report_worker()


@dg.job(executor_def=dg.in_process_executor)  # as netassets.definitions runs its steps
def sleepy_job():
    sleep_a_while()
