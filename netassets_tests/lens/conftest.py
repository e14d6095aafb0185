"""LENS fixtures: a small generated LENS root (shared per session) and a materialise helper."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from netassets.defs.lens.assets import lens_ingest
from netassets.lens.sample import write_lens
from netassets.pipelines import pipeline

DAY = dt.date(2023, 11, 1)
REGIONS = ["chicago", "ottawa"]


@pytest.fixture(scope="session")
def generated_lens_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full-rate hour per region: 360 000 rows, ~238 clean groups each."""
    root = tmp_path_factory.mktemp("lens_root")
    write_lens(root, REGIONS, DAY, days=1, seed=7, hours=1)
    return root


@pytest.fixture
def lens_root(generated_lens_root: Path, monkeypatch: pytest.MonkeyPatch, netassets_home: Path) -> Path:
    monkeypatch.setenv("NETASSETS_LENS_ROOT", str(generated_lens_root))
    return generated_lens_root


# 10 samples a second: 150 points a group, so the threshold drops to match. For tests about
# orchestration (idempotence, config) rather than about the data, at a tenth of the cost.
LOW_RATE_HZ = 10
LOW_RATE_CONFIG = {"ops": {"lens_ingest": {"config": {"min_samples": 100}}}}


@pytest.fixture(scope="session")
def generated_low_rate_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lens_low_rate")
    write_lens(root, REGIONS, DAY, days=1, seed=7, hours=1, rate_hz=LOW_RATE_HZ)
    return root


@pytest.fixture
def low_rate_root(generated_low_rate_root: Path, monkeypatch: pytest.MonkeyPatch, netassets_home: Path) -> Path:
    monkeypatch.setenv("NETASSETS_LENS_ROOT", str(generated_low_rate_root))
    return generated_low_rate_root


def materialize_lens(warehouse, instance, partition_key: str, run_config=None):
    pipeline("lens").register(instance, [partition_key.split("|")[1]])
    return dg.materialize(
        [lens_ingest],
        partition_key=partition_key,
        resources={"warehouse": warehouse},
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "expected a failed step"
    error = failures[0].step_failure_data.error
    return error.message + "".join(c.message for c in _causes(error))


def _causes(error):
    while error is not None and error.cause is not None:
        error = error.cause
        yield error


def lens_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The metadata of ``asset``'s materialisation in ``result`` (lens_ingest materialises two assets in one step)."""
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)]
    return event.materialization.metadata
