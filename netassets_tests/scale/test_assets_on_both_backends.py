"""Every asset works unchanged on either backend: LENS ingest (two tables, one transaction),
group features (a reader of lens_clean_groups) and their GX checks, materialised on the DuckDB
file and on DuckLake from the same files, give the same rows, the same metadata (what the UI
shows) and the same training sample (lens_gmm's reader)."""

from __future__ import annotations

import dagster as dg

from netassets.core import lake
from netassets.core.warehouse import DuckDBWarehouse
from netassets.defs.lens.assets import lens_group_features, lens_ingest
from netassets.defs.lens.checks import lens_group_features_finite
from netassets.lens.models import sample_partitions
from netassets.lens.sample import write_lens
from netassets.pipelines import pipeline
from netassets_tests.lens.conftest import DAY

KEYS = [f"{DAY.isoformat()}|chicago"]
TABLES = {"lens_raw_irtt": "region, hour", "lens_clean_groups": "region, group_start",
          "lens_group_features": "region, group_start"}


def materialise_all(warehouse: DuckDBWarehouse) -> dict:
    metadata = {}
    with dg.instance_for_test() as instance:
        pipeline("lens").register(instance, ["chicago", "ottawa"])
        for key in KEYS:
            result = dg.materialize(
                [lens_ingest, lens_group_features, lens_group_features_finite],
                partition_key=key, instance=instance, resources={"warehouse": warehouse},
                run_config={"ops": {"lens_ingest": {"config": {"min_samples": 100}}}})
            assert result.success
            checks = result.get_asset_check_evaluations()
            assert len(checks) == 3 and all(c.passed for c in checks), [(c.check_name, c.passed) for c in checks]
            for event in result.get_asset_materialization_events():
                m = event.materialization
                metadata[(m.asset_key.to_user_string(), key)] = {k: v.value for k, v in m.metadata.items()
                                                                 if isinstance(v.value, (int, float, str))
                                                                 and not k.endswith(("per_s", "_seconds"))
                                                                 # names the catalog the table lives in
                                                                 and k != "dagster/table_name"}
    return metadata


def snapshot(warehouse: DuckDBWarehouse) -> dict:
    tables = {}
    for table, order in TABLES.items():
        columns = [c for c in warehouse.query(f"SELECT * FROM {table} LIMIT 0").columns]
        tables[table] = warehouse.query(f"SELECT * FROM {table} ORDER BY {order}").select(sorted(columns))
    return tables


def test_lens_assets_give_the_same_rows_metadata_and_samples_on_both_backends(netassets_home, lake_env, monkeypatch):
    write_lens(netassets_home / "landing" / "lens", ["chicago"], DAY, days=1, seed=3, hours=1, rate_hz=10)
    on_lake = DuckDBWarehouse(backend="ducklake")
    lake_meta = materialise_all(on_lake)
    lake_tables, lake_sample = snapshot(on_lake), sample_partitions(on_lake, 1, seed=0)

    monkeypatch.setenv(lake.BACKEND_ENV, "duckdb")
    on_file = DuckDBWarehouse(database=str(netassets_home / "warehouse.duckdb"))
    assert on_file.lake_settings() is None
    file_meta = materialise_all(on_file)
    assert file_meta == lake_meta and len(file_meta) == 3 * len(KEYS)
    for table, frame in snapshot(on_file).items():
        assert frame.height > 0 and frame.equals(lake_tables[table]), table
    assert sample_partitions(on_file, 1, seed=0) == lake_sample
