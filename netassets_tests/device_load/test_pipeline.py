"""End to end on generated data: landing CSV -> raw -> features -> windows -> torchrun Embed-LSTM -> anomalies."""

from __future__ import annotations

import argparse
import datetime as dt
import json

import dagster as dg
import numpy as np
import polars as pl
import pytest

import netassets.defs.device_load
from netassets.core.settings import artifacts_dir, landing_dir
from netassets.defs.device_load.assets import (
    device_load_anomalies, device_load_features, device_load_model, device_load_raw, device_load_windows,
)
from netassets.defs.device_load.checks import anomaly_rate, raw_gaps, raw_gx_expectations
from netassets.device_load import sample
from netassets.device_load.store import model_store

from .helpers import PIPELINE, hourly, materialize, write_csv

START = dt.date(2025, 6, 1)
DAYS = 4


def _generate(out, name="demo", regions="nl", seed=3):
    args = argparse.Namespace(out=out, name=name, start=START.isoformat(), days=DAYS, regions=regions,
                              hosts=1, interfaces=2, anomalies=4, seed=seed)
    return sample.generate(args)


def test_end_to_end(netassets_home, warehouse, instance):
    csv = _generate(landing_dir("device_load"))
    injected = json.loads(csv.with_name("demo.anomalies.json").read_text())
    raw_bytes = csv.read_bytes()

    # Ingest every day; the GX checks run on the last one (they have their own tests on bad data).
    for offset in range(DAYS):
        checks = [raw_gx_expectations, raw_gaps] if offset == DAYS - 1 else []
        result = materialize([device_load_raw, device_load_features, *checks],
                             f"{START + dt.timedelta(days=offset)}|nl", warehouse, instance)
        assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 2 and all(e.passed for e in evaluations)
    assert csv.read_bytes() == raw_bytes  # raw files are never modified
    counts = warehouse.query("SELECT count(*) AS n, count(DISTINCT router) AS routers FROM device_load_features").row(0)
    assert counts == (DAYS * 24 * 2, 2)

    # Windows + training through the real torchrun launcher, 2 gloo ranks.
    result = materialize([device_load_windows, device_load_model], None, warehouse, instance, run_config={"ops": {
        "device_load_windows": {"config": {"window": 6}},
        "device_load_model": {"config": {"nproc": 2, "epochs": 4}},
    }})
    assert result.success
    model_meta = result.asset_materializations_for_node("device_load_model")[0].metadata
    print(model_meta["verdict"].value)
    assert model_meta["nproc"].value == 2
    for key in ("val_mse", "test_mse", "evaluation", "verdict", "strongest_baseline", "evaluation_split"):
        assert key in model_meta
    assert np.isfinite(model_meta["val_mse"].value) and model_meta["val_mse"].value > 0
    assert model_meta["evaluation_split"].value.startswith("test: ")
    assert (artifacts_dir("device_load") / "scalers.json").is_file()
    (verdict,) = result.get_asset_check_evaluations()
    assert verdict.check_name == "beats_strongest_baseline" and verdict.passed
    live = model_store().production()  # the winning run went to production, as safetensors
    assert live.run_id == result.run_id and live.path("weights").name == "model.safetensors"
    assert model_meta["model_path"].value == str(live.path("weights"))

    # Score the day with the most injected anomaly hours.
    hours_by_day = {}
    for a in injected:
        day = a["start"][:10]
        hours_by_day[day] = hours_by_day.get(day, 0) + a["hours"]
    day = max(sorted(hours_by_day), key=hours_by_day.get)
    # Four days of hourly data: a short running error history (the default needs 100 earlier errors).
    short_history = {"ops": {"device_load_anomalies": {"config": {"min_history": 24, "long_window": 48, "refractory": 3}}}}
    result = materialize([device_load_anomalies, anomaly_rate], f"{day}|nl", warehouse, instance, run_config=short_history)
    assert result.success
    meta = result.asset_materializations_for_node("device_load_anomalies")[0].metadata
    assert any(k.startswith("plot ") for k in meta)
    table = warehouse.query("SELECT * FROM device_load_anomalies")
    assert table.height == 2 * 24
    expected = {"time", "max_metric_value", "mean_metric_value", "actual_max", "actual_mean",
                "predicted_max", "predicted_mean", "label"}
    assert expected <= set(table.columns)
    # Injected hours stand out: their errors exceed the typical error of the other hours.
    marked = pl.DataFrame([{"router": a["router"], "time": dt.datetime.fromisoformat(a["start"]) + dt.timedelta(hours=h)}
                           for a in injected for h in range(a["hours"])]).with_columns(pl.lit(True).alias("injected"))
    joined = table.join(marked.unique(), on=["router", "time"], how="left").with_columns(pl.col("injected").fill_null(False))
    error = pl.col("error_max") + pl.col("error_mean")
    injected_error = joined.filter(pl.col("injected")).select(error.mean()).item()
    normal_error = joined.filter(~pl.col("injected")).select(error.median()).item()
    assert injected_error > 2 * normal_error
    assert joined.filter(pl.col("injected"))["is_anomaly"].any()

    # A router unseen at training time is reported, not a crash; the known routers are still scored.
    write_csv(landing_dir("device_load") / "new_switch.csv",
              hourly("nl-new-switch-09", "Gi0/1", dt.datetime.fromisoformat(day), [5.0] * 24, [3.0] * 24))
    assert materialize([device_load_raw, device_load_features], f"{day}|nl", warehouse, instance).success
    result = materialize([device_load_anomalies], f"{day}|nl", warehouse, instance, run_config=short_history)
    assert result.success
    skipped = result.asset_materializations_for_node("device_load_anomalies")[0].metadata["skipped_routers"].value
    assert list(skipped) == ["nl-new-switch-09-Gi0/1"] and "unseen" in skipped["nl-new-switch-09-Gi0/1"]
    assert warehouse.query("SELECT count(*) FROM device_load_anomalies").item() == 2 * 24


def _defs() -> dg.Definitions:
    """What the code location discovers in netassets/defs/device_load/ (this pipeline's folder only)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return dg.load_defs(netassets.defs.device_load)


def test_definitions_sensor_and_schedules(netassets_home, instance):
    _generate(landing_dir("device_load"), regions="nl,be")
    defs = _defs()
    names = {s.name for s in defs.sensors} | {s.name for s in defs.schedules}
    assert names == {"device_load_landing_sensor", "device_load_daily_ingestion_schedule",
                     "device_load_monthly_retrain_schedule"}
    assert {a.key.to_user_string() for a in defs.assets} == {
        "device_load_raw", "device_load_features", "device_load_windows", "device_load_model", "device_load_anomalies"}
    check_keys = {key for checks in defs.asset_checks for key in checks.check_keys}
    check_keys |= {spec.key for asset in defs.assets for spec in asset.check_specs}
    assert {f"{k.asset_key.to_user_string()}:{k.name}" for k in check_keys} == {
        "device_load_raw:gx_expectations", "device_load_raw:gaps_within_tolerance", "device_load_anomalies:anomaly_rate",
        "device_load_model:beats_strongest_baseline"}
    sensor = next(iter(defs.sensors))
    result = sensor(dg.build_sensor_context(instance=instance))
    keys = sorted(r.partition_key for r in result.run_requests)
    assert len(keys) == DAYS * 2 and keys[0] == f"{START}|be" and keys[-1] == f"{START + dt.timedelta(days=DAYS - 1)}|nl"
    assert result.dynamic_partitions_requests[0].partition_keys == ["be", "nl"]
    # Same files, next tick: nothing new.
    again = sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert isinstance(again, dg.SkipReason)

    PIPELINE.register(instance, ["be", "nl"])
    daily = next(s for s in defs.schedules if s.name == "device_load_daily_ingestion_schedule")
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2025, 6, 3, 2))
    requests = daily(context)
    assert sorted(r.partition_key for r in requests) == ["2025-06-02|be", "2025-06-02|nl"]


def test_windows_infer_a_one_minute_step_and_name_it_when_history_is_short(netassets_home, warehouse, instance):
    start = dt.datetime(2025, 6, 1)
    minutes = 6 * 60  # six hours of one-minute samples: no hourly window could ever form
    load = [5.0 + np.sin(m / 30.0) for m in range(minutes)]
    rows = [("nl-ams-sw-01", "Gi0/1", (start + dt.timedelta(minutes=m)).strftime("%Y-%m-%d %H:%M:%S"), v + 1, v)
            for m, v in enumerate(load)]
    write_csv(landing_dir("device_load") / "minutes.csv", rows)
    assert materialize([device_load_raw, device_load_features], f"{start.date()}|nl", warehouse, instance).success
    result = materialize([device_load_windows], None, warehouse, instance,
                         run_config={"ops": {"device_load_windows": {"config": {"window": 6}}}})
    meta = result.asset_materializations_for_node("device_load_windows")[0].metadata
    assert meta["step_seconds"].value == 60 and meta["step_rule"].value == "inferred from the data"
    assert meta["train_windows"].value > 0 and meta["val_windows"].value > 0
    # A configured hourly step on the same data: the message names the step and the counts.
    with pytest.raises(ValueError, match=r"at a step of 3600 s \(configured\): 360 feature rows of 1 routers gave windows "
                                         r"\{'train': 0, 'val': 0, 'test': 0\}.*is step_minutes right"):
        materialize([device_load_windows], None, warehouse, instance,
                    run_config={"ops": {"device_load_windows": {"config": {"window": 6, "step_minutes": 60}}}})
