"""A test `dagster dev` (``netassets.devserver``) on temporary homes with LENS sample data (the scale tests').

    with start_dev(tmp_dir, regions=["chicago"], days=1) as server:
        run_id = server.launch_partition_run("lens_ingest_job", "2023-11-01|chicago", RUN_CONFIG)
        assert server.wait_run(run_id) == "SUCCESS"
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from netassets.core.settings import INSTANCE_SETTINGS
from netassets.devserver import TERMINAL, DagsterDev, DagsterDevError, free_port  # noqa: F401 (re-exported to tests)

LENS_ASSETS = ("lens_raw_irtt", "lens_clean_groups")
LENS_CHECKS = ("gx_expectations", "gx_expectations")  # one per asset in LENS_ASSETS
FIRST_DAY = dt.date(2023, 11, 1)
SAMPLE_RATE_HZ = 10  # 150 samples per 15 s group at most ...
MIN_SAMPLES = 100  # ... so keep groups with more than 100 (the seed's 1300 is for 100 Hz)

# The ops' config for 10 Hz sample data (the executor comes from the definitions).
RUN_CONFIG: dict[str, Any] = {
    "ops": {"lens_ingest": {"config": {"min_samples": MIN_SAMPLES}}},
}


def partition_keys(days: int, regions: Iterable[str], first_day: dt.date = FIRST_DAY) -> list[str]:
    return [
        f"{(first_day + dt.timedelta(days=d)).isoformat()}|{region}" for d in range(days) for region in regions
    ]


def prepare_homes(root: Path, regions: list[str], days: int, max_runs: int = 2,
                  dagster_yaml: Path | None = None, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """DAGSTER_HOME (deploy/dagster.yaml + run queue limit, regions registered) and NETASSETS_HOME with LENS data.

    Returns the environment for `dagster dev`.
    """
    import dagster as dg

    from netassets.lens.sample import write_lens
    from netassets.pipelines import pipeline

    dagster_home = root / "dagster_home"
    netassets_home = root / "netassets_home"
    dagster_home.mkdir(parents=True)
    netassets_home.mkdir(parents=True)
    # The repository's deploy/dagster.yaml (no community modal, no telemetry, the duckdb pool) plus a run
    # limit: every run worker imports torch, and twenty at once would swap a small CI machine.
    config = yaml.safe_load((dagster_yaml or INSTANCE_SETTINGS).read_text())
    if "run_coordinator" in config:
        config["run_coordinator"].setdefault("config", {})["max_concurrent_runs"] = max_runs
    else:
        config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = max_runs
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))
    saved_env = {k: os.environ.get(k) for k in (extra_env or {})}
    os.environ.update(extra_env or {})  # the instance below reads the same settings

    write_lens(netassets_home / "landing" / "lens", regions, FIRST_DAY, days, seed=0, hours=1, rate_hz=SAMPLE_RATE_HZ)
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            pipeline("lens").register(instance, regions)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    env = {k: v for k, v in os.environ.items() if k not in ("NETASSETS_LENS_ROOT", "DAGSTER_HOME")}
    env.update(extra_env or {})
    env.update(
        DAGSTER_HOME=str(dagster_home),
        NETASSETS_HOME=str(netassets_home),
        GX_ANALYTICS_ENABLED="false",
        OMP_NUM_THREADS="1",
        DAGSTER_DISABLE_TELEMETRY="1",
    )
    return env


class LensDev(DagsterDev):
    """The test server: runs and backfills of the LENS ingest assets with the 10 Hz config by default."""

    @classmethod
    def start(cls, root: Path, regions: list[str], days: int, max_runs: int = 2, timeout_s: float = 240,
              dagster_yaml: Path | None = None, extra_env: dict[str, str] | None = None) -> "LensDev":
        return cls.launch_with_data(root, regions, days, max_runs, dagster_yaml, extra_env).wait_ready(timeout_s)

    @classmethod
    def launch_with_data(cls, root: Path, regions: list[str], days: int, max_runs: int = 2,
                         dagster_yaml: Path | None = None, extra_env: dict[str, str] | None = None) -> "LensDev":
        root.mkdir(parents=True, exist_ok=True)
        return cls.launch(root, prepare_homes(root, regions, days, max_runs, dagster_yaml, extra_env))

    def launch_partition_run(self, job_name: str, partition_key: str, run_config: dict | None = None,
                             dimensions: tuple[str, str] = ("day", "region")) -> str:
        return super().launch_partition_run(job_name, partition_key, RUN_CONFIG if run_config is None else run_config,
                                            dimensions)

    def launch_backfill(self, partition_names: list[str], assets: Iterable[str] = LENS_ASSETS,
                        run_config: dict | None = None, title: str = "netassets test backfill") -> str:
        return super().launch_backfill(partition_names, assets, RUN_CONFIG if run_config is None else run_config, title)
