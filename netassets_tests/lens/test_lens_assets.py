"""LENS raw -> clean groups materialised in process on generated data, with their GX checks."""

from __future__ import annotations

import datetime as dt
import hashlib

import dagster as dg
import numpy as np
import polars as pl
import pytest

from netassets.core.metadata import shown_float
from netassets.lens.cleaning import GROUP_POINTS, nearest_fill, observed_mask, token_fill
from netassets.lens.features import series_matrix
from netassets_tests.lens.conftest import DAY, LOW_RATE_CONFIG, lens_metadata, materialize_lens

KEY = f"{DAY.isoformat()}|chicago"


def partition_digest(warehouse, table: str) -> tuple[int, str]:
    rows = warehouse.query(
        f"SELECT * FROM {table} WHERE day = $day AND region = 'chicago' ORDER BY ALL", {"day": DAY}
    ).rows()
    return len(rows), hashlib.sha256(repr(rows).encode()).hexdigest()


def test_materialise_both_assets_and_checks(lens_root, warehouse, instance):
    result = materialize_lens(warehouse, instance, KEY)
    assert result.success
    raw_md = lens_metadata(result, "lens_raw_irtt")
    assert raw_md["dagster/row_count"].value == 360_000
    assert raw_md["missing_hours"].value == list(range(1, 24))
    assert 0.0 < raw_md["lost_packet_share"].value < 0.1
    assert raw_md["dagster/table_name"].value.endswith(".main.lens_raw_irtt")
    assert raw_md["reader"].value == "polars"  # well-formed files never fall back to the slower DuckDB read
    # the table holds one row per hour file; the raw rows stay in the files, read by the macro
    assert {"day", "region", "hour", "file", "rows", "lost", "duplicate_stamps", "first_timestamp"} <= {
        c.name for c in raw_md["dagster/column_schema"].schema.columns}
    assert warehouse.query("SELECT count(*), sum(rows)::BIGINT FROM lens_raw_irtt").row(0) == (1, 360_000)
    rows = warehouse.query("SELECT * FROM lens_raw_irtt_rows(?, 'chicago')", [DAY])
    assert rows.columns == ["day", "region", "timestamp", "rtt", "uplink", "downlink"] and rows.height == 360_000
    lost = warehouse.query("SELECT count(*) FILTER (WHERE rtt <= 0) FROM lens_raw_irtt_rows(?, 'chicago')", [DAY]).item()
    assert raw_md["lost_packet_share"].value == shown_float(lost / 360_000)  # four significant digits in the UI
    clean_md = lens_metadata(result, "lens_clean_groups")
    assert 200 < clean_md["dagster/row_count"].value < 240  # 240 slots an hour, minus partial, lossy, last
    assert clean_md["dagster/table_name"].value.endswith(".main.lens_clean_groups")
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    raw_gx, clean_gx = checks["lens_raw_irtt", "gx_expectations"], checks["lens_clean_groups", "gx_expectations"]
    assert raw_gx.passed and clean_gx.passed
    assert raw_gx.partition == clean_gx.partition == KEY  # recorded against the partition checked
    assert clean_gx.metadata["evaluated_expectations"].value >= 8
    assert "expect_column_values_to_be_between" in clean_gx.metadata["gx_results"].value
    assert raw_gx.metadata["rows_validated"].value == 1  # one row per hour file, not 360 000 raw rows


def test_a_warehouse_holding_a_copy_of_the_raw_rows_drops_it(low_rate_root, warehouse, instance):
    """Older netassets copied every raw row into lens_raw_irtt; the first ingest after the upgrade
    replaces that table with the per-file one (the rows are in the landing files)."""
    warehouse.replace_partition("lens_raw_irtt", {"day": DAY, "region": "ottawa"}, data=pl.DataFrame(
        {"day": [DAY], "region": ["ottawa"], "timestamp": [1], "rtt": [1.0], "uplink": [1.0], "downlink": [1.0]}))
    result = materialize_lens(warehouse, instance, KEY, run_config=LOW_RATE_CONFIG)
    assert result.success
    assert "rtt" not in warehouse.query("SELECT * FROM lens_raw_irtt").columns
    assert any("held a copy of the raw rows" in str(e.message) for e in instance.all_logs(result.run_id))


def test_a_warehouse_holding_the_token_fill_as_a_list_gets_the_bitmap(low_rate_root, warehouse, instance):
    """Older netassets stored the token fill as a second list of doubles; the first ingest after
    the upgrade turns every partition's into the bitmap, and the token fill reads back the same."""
    rng = np.random.default_rng(7)
    token = np.where(rng.random((3, GROUP_POINTS)) < 0.1, -1.0, rng.uniform(20, 80, (3, GROUP_POINTS)))
    nearest = nearest_fill(token)
    warehouse.replace_partition("lens_clean_groups", {"day": DAY, "region": "ottawa"}, data=pl.DataFrame({
        "day": [DAY] * 3, "region": ["ottawa"] * 3, "group_id": [0, 1, 2],
        "group_start": [dt.datetime(2023, 11, 1, 0, 0, 12 + 15 * i) for i in range(3)],
        "n_observed": pl.Series((token != -1).sum(axis=1), dtype=pl.Int16), "min_samples": pl.Series([1300] * 3, dtype=pl.Int16),
        "rtt_token": list(token), "rtt_nearest": list(nearest)}))
    result = materialize_lens(warehouse, instance, KEY, run_config=LOW_RATE_CONFIG)
    assert result.success
    assert any("stores the token fill as a list" in str(e.message) for e in instance.all_logs(result.run_id))
    old = warehouse.query("SELECT * FROM lens_clean_groups WHERE region = 'ottawa' ORDER BY group_id")
    assert "rtt_token" not in old.columns
    np.testing.assert_array_equal(series_matrix(old["rtt_nearest"]), nearest)
    np.testing.assert_array_equal(token_fill(series_matrix(old["rtt_nearest"]), observed_mask(old["rtt_observed"].to_list())),
                                  token)
    new = warehouse.query("SELECT rtt_observed FROM lens_clean_groups WHERE region = 'chicago'")
    assert new.height > 0 and {len(b) for b in new["rtt_observed"].to_list()} == {(GROUP_POINTS + 7) // 8}


def test_sql_token_fill_matches_the_one_cleaning_made(low_rate_root, warehouse, instance):
    assert materialize_lens(warehouse, instance, KEY, run_config=LOW_RATE_CONFIG).success
    groups = warehouse.query("SELECT rtt_nearest, rtt_observed, n_observed, "
                             "lens_rtt_token(rtt_nearest, rtt_observed) AS rtt_token FROM lens_clean_groups")
    token = series_matrix(groups["rtt_token"])
    np.testing.assert_array_equal(
        token, token_fill(series_matrix(groups["rtt_nearest"]), observed_mask(groups["rtt_observed"].to_list())))
    np.testing.assert_array_equal((token != -1).sum(axis=1), groups["n_observed"].to_numpy())
    np.testing.assert_array_equal(nearest_fill(token), series_matrix(groups["rtt_nearest"]))


def test_rematerialising_gives_the_same_rows(low_rate_root, warehouse, instance):
    def run(key):
        return materialize_lens(warehouse, instance, key, run_config=LOW_RATE_CONFIG)

    assert run(KEY).success
    first = partition_digest(warehouse, "lens_raw_irtt"), partition_digest(warehouse, "lens_clean_groups")
    assert run(KEY).success
    second = partition_digest(warehouse, "lens_raw_irtt"), partition_digest(warehouse, "lens_clean_groups")
    assert first == second
    other = run(f"{DAY.isoformat()}|ottawa")
    assert other.success
    assert partition_digest(warehouse, "lens_clean_groups") == first[1]  # other partitions untouched


def test_clean_threshold_is_run_config(low_rate_root, warehouse, instance):
    config = {"ops": {"lens_ingest": {"config": {"min_samples": 148}}}}
    strict = materialize_lens(warehouse, instance, KEY, run_config=config)
    assert strict.success
    strict_groups = lens_metadata(strict, "lens_clean_groups")["dagster/row_count"].value
    default = materialize_lens(warehouse, instance, KEY, run_config=LOW_RATE_CONFIG)
    default_groups = lens_metadata(default, "lens_clean_groups")["dagster/row_count"].value
    assert strict_groups < default_groups


def test_bad_threshold_is_rejected_before_running(low_rate_root, warehouse, instance):
    config = {"ops": {"lens_ingest": {"config": {"min_samples": 1500}}}}
    try:
        result = materialize_lens(warehouse, instance, KEY, run_config=config)
        assert not result.success
    except dg.DagsterInvalidConfigError as exc:
        assert "min_samples" in str(exc)


def test_definitions_load():
    from netassets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert {"lens_raw_irtt", "lens_clean_groups"} <= keys
    assert repo.has_sensor_def("lens_landing_sensor")
