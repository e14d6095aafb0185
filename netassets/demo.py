"""`netassets demo`: sample data for every pipeline, materialised end to end with its checks.

Uses the embedded default: a DuckDB file under NETASSETS_HOME and a Dagster instance under
$NETASSETS_HOME/dagster_home (unless DAGSTER_HOME is set), so `dagster dev` afterwards shows
every run, materialisation and check result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import dagster as dg

from netassets.core.settings import REPO_ROOT, netassets_home


@dataclass
class DemoStep:
    pipeline: str
    prepare: Callable[[dg.DagsterInstance], None]  # generate data, register partitions
    selection: list[str]  # asset keys, materialised with their checks
    partition_key: str | None


def _lens_prepare(instance: dg.DagsterInstance) -> None:
    import datetime as dt

    from netassets.core.settings import landing_dir
    from netassets.lens.sample import write_lens

    write_lens(landing_dir("lens"), ["chicago", "ottawa"], dt.date(2023, 11, 1), days=1, seed=0, hours=2)
    instance.add_dynamic_partitions("lens_regions", ["chicago", "ottawa"])


STEPS = [
    DemoStep("lens", _lens_prepare, ["lens_raw_irtt", "lens_clean_groups"], "2023-11-01|chicago"),
]


def _instance_home(home: Path) -> Path:
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster_home")
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def run(args: argparse.Namespace) -> None:
    if args.home:
        os.environ["NETASSETS_HOME"] = str(Path(args.home).expanduser().resolve())
    home = netassets_home()
    home.mkdir(parents=True, exist_ok=True)
    dagster_home = _instance_home(home)
    from netassets.definitions import defs

    jobs = {step.pipeline: dg.define_asset_job(f"demo_{step.pipeline}", selection=step.selection) for step in STEPS}
    resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=list(jobs.values())))
    failed = []
    with dg.DagsterInstance.get() as instance:
        for step in STEPS:
            started = time.perf_counter()
            print(f"[{step.pipeline}] generating sample data", flush=True)
            step.prepare(instance)
            result = resolved.get_job_def(jobs[step.pipeline].name).execute_in_process(
                partition_key=step.partition_key, instance=instance, raise_on_error=False
            )
            checks = result.get_asset_check_evaluations()
            print(
                f"[{step.pipeline}] {'ok' if result.success else 'FAILED'} in {time.perf_counter() - started:.0f}s: "
                f"{', '.join(step.selection)}; checks passed {sum(c.passed for c in checks)}/{len(checks)}",
                flush=True,
            )
            if not result.success:
                failed.append(step.pipeline)

    print(
        f"\nwarehouse:  {home / 'warehouse.duckdb'}\n"
        f"landing:    {home / 'landing'}\n"
        f"models:     {home / 'models'}\n"
        f"browse:     DAGSTER_HOME={dagster_home} NETASSETS_HOME={home} dagster dev"
    )
    if failed:
        raise SystemExit(f"demo failed for: {', '.join(failed)}")
