"""Small helpers for the device-load tests: write device_data CSVs and materialise partitions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from netassets.pipelines import pipeline

PIPELINE = pipeline("device_load")

HEADER = "hostname,ifname,timeslot,max_metric_value,mean_metric_value\n"


def write_csv(path: Path, rows: list[tuple], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def hourly(hostname: str, ifname: str, start: dt.datetime, maxes, means) -> list[tuple]:
    return [(hostname, ifname, (start + dt.timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S"), mx, mn)
            for i, (mx, mn) in enumerate(zip(maxes, means))]


def materialize(assets, partition_key, warehouse, instance, run_config=None) -> dg.ExecuteInJobResult:
    region = partition_key.split("|")[1] if partition_key else None
    if region and region not in instance.get_dynamic_partitions(PIPELINE.dynamic.name):
        PIPELINE.register(instance, [region])
    return dg.materialize(assets, partition_key=partition_key, resources={"warehouse": warehouse},
                          instance=instance, run_config=run_config)
