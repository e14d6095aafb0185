"""Bad run config is refused before a step does anything (no torchrun, no files), and the
message names the field. Dagster builds each asset's config object before its body runs."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pytest

from netassets.defs.device_load.assets import device_load_anomalies, device_load_model, device_load_windows
from netassets.defs.device_load.pipeline import PIPELINE as DEVICE_LOAD
from netassets.defs.lens.model_assets import lens_gmm, lens_patchtst
from netassets.defs.traffic.assets import traffic_lstm
from netassets.pipelines import pipeline

CASES = [
    # the values the issue found reaching the workers, and a few more
    (lens_patchtst, "epochs", -1), (lens_patchtst, "batch_size", 0), (lens_patchtst, "batch_size", -5),
    (lens_patchtst, "lr", math.nan), (lens_patchtst, "d_model", 0), (lens_patchtst, "val_fraction", 1.5),
    (lens_patchtst, "ff_dropout", 1.5), (lens_patchtst, "channels", "rtt"),
    (lens_gmm, "k_min", 0), (lens_gmm, "silhouette_sample", 0), (lens_gmm, "min_cluster_share", 1.5),
    (device_load_model, "epochs", -1), (device_load_model, "batch_size", 0), (device_load_model, "batch_size", -5),
    (device_load_model, "lr", math.nan), (device_load_model, "nproc", 0), (device_load_model, "patience", 0),
    (device_load_windows, "window", 1), (device_load_windows, "step_minutes", 0), (device_load_windows, "first_day", "2024-13-01"),
    (device_load_anomalies, "method", "dbscan"), (device_load_anomalies, "threshold", 1.5),
    (device_load_anomalies, "eps_quantile", 1.0), (device_load_anomalies, "eps", math.inf),
    (traffic_lstm, "epochs", -1), (traffic_lstm, "batch_size", 0), (traffic_lstm, "learning_rate", math.nan),
    (traffic_lstm, "val_fraction", 1.5), (traffic_lstm, "nproc", -1), (traffic_lstm, "normalisation", "zscore"),
]


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failures, "expected the step to fail"
    error, text = failures[0].step_failure_data.error, []
    while error is not None:
        text.append(error.message)
        error = error.cause
    return "\n".join(text)


@pytest.mark.parametrize("asset, field, value", CASES, ids=[f"{a.key.to_user_string()}-{f}={v}" for a, f, v in CASES])
def test_bad_config_is_refused_naming_the_field_before_anything_runs(asset, field, value, netassets_home: Path, warehouse, instance):
    resolved = "partition" if asset.partitions_def is not None else None
    kwargs = {}
    if resolved:
        instance.add_dynamic_partitions(DEVICE_LOAD.dynamic.name, ["nl"])
        pipeline("lens").register(instance, ["chicago"])
        kwargs["partition_key"] = "2024-01-02|nl" if "device_load" in asset.key.to_user_string() else "2024-01-02|chicago"
    try:
        result = dg.materialize([asset], instance=instance, resources={"warehouse": warehouse}, raise_on_error=False,
                                run_config={"ops": {asset.op.name: {"config": {field: value}}}}, **kwargs)
    except dg.DagsterInvalidConfigError as refused:  # caught by the config schema itself, before any run exists
        assert field in str(refused)
        return
    assert field in _failure(result)
    assert "launching: " not in " ".join(str(e.message) for e in instance.all_logs(result.run_id)), "torchrun was started"
    assert not (netassets_home / "models").exists() or not any((netassets_home / "models").rglob("*.pt"))


@pytest.mark.parametrize("field, value", [("cut", math.nan), ("cut", 1.5), ("learning_rate", 0.0), ("steps", 0),
                                          ("baseline_z", -1.0), ("min_subject_rows", 1)])
def test_perfsonar_detector_config_is_refused_naming_the_field(field, value):
    from pydantic import ValidationError

    from netassets.defs.perfsonar.assets import AnomalyConfig

    with pytest.raises(ValidationError, match=field):
        AnomalyConfig(**{field: value})
