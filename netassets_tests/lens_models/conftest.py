"""One generated LENS warehouse per test session: 3 days x 2 regions x 1 hour, ingested,
featurised, clustered by the global GMM. Built once because a torchrun launch and six
partition runs are the slow parts on a shared 2-core machine; tests that damage data work
on a copy of the DuckDB file."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from netassets.core.warehouse import DuckDBWarehouse
from netassets.defs.lens.assets import lens_ingest
from netassets.lens.sample import write_lens
from netassets.pipelines import pipeline

DAYS = [dt.date(2023, 11, 1) + dt.timedelta(days=i) for i in range(3)]
REGIONS = ["chicago", "ottawa"]
PARTITIONS = [f"{day.isoformat()}|{region}" for day in DAYS for region in REGIONS]
# Clustered in the fixture: a day outside the GMM's training sample (seed 0 samples 11-03 and 11-02),
# so the ARI measured on them is out of sample. One run per partition is slow, so not all six.
CLUSTERED = [f"{DAYS[0].isoformat()}|{region}" for region in REGIONS]


@dataclass
class LensWorld:
    home: Path
    warehouse: DuckDBWarehouse
    instance: dg.DagsterInstance
    gmm_result: dg.ExecuteInProcessResult
    cluster_results: dict[str, dg.ExecuteInProcessResult]

    def copy_warehouse(self, target: Path) -> DuckDBWarehouse:
        shutil.copyfile(self.warehouse.path, target)
        return DuckDBWarehouse(database=str(target))


@pytest.fixture(scope="session")
def lens_world(tmp_path_factory: pytest.TempPathFactory) -> LensWorld:
    from netassets.defs.lens.assets import lens_clusters, lens_group_features
    from netassets.defs.lens.checks import lens_clusters_every_group
    from netassets.defs.lens.model_assets import lens_gmm

    home = tmp_path_factory.mktemp("lens_models_home")
    with pytest.MonkeyPatch.context() as patch, dg.instance_for_test() as instance:
        patch.setenv("NETASSETS_HOME", str(home))
        patch.delenv("NETASSETS_LENS_ROOT", raising=False)
        write_lens(home / "landing" / "lens", REGIONS, DAYS[0], len(DAYS), seed=0, hours=1)
        warehouse = DuckDBWarehouse(database=str(home / "warehouse.duckdb"))
        resources = {"warehouse": warehouse}
        pipeline("lens").register(instance, REGIONS)
        for key in PARTITIONS:
            dg.materialize([lens_ingest, lens_group_features], partition_key=key,
                           resources=resources, instance=instance)
        gmm_result = dg.materialize([lens_gmm], resources=resources, instance=instance)
        cluster_results = {
            key: dg.materialize([lens_clusters, lens_clusters_every_group], partition_key=key, resources=resources, instance=instance)
            for key in CLUSTERED
        }
        yield LensWorld(home, warehouse, instance, gmm_result, cluster_results)


@pytest.fixture
def lens_home(lens_world: LensWorld, monkeypatch: pytest.MonkeyPatch) -> LensWorld:
    """The shared world with NETASSETS_HOME pointing at it for this test."""
    monkeypatch.setenv("NETASSETS_HOME", str(lens_world.home))
    monkeypatch.delenv("NETASSETS_LENS_ROOT", raising=False)
    return lens_world
