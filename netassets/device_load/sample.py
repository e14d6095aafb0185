"""device_data CSV (hourly max/mean load per interface) with injected, recorded anomalies.

    netassets generate device_load --days 7 --regions nl,be --interfaces 2 --anomalies 3 --seed 0

Writes ``<out>/<name>.csv`` in the seed's layout (hostname, ifname, timeslot,
max_metric_value, mean_metric_value) and ``<out>/<name>.anomalies.json`` listing every injected
anomaly (router, first timeslot, hours, kind). Load follows a daily cycle per interface;
an anomaly multiplies max and mean by 3-5 ("spike") or by 0.05 ("drop") for 1-3 hours.
Anomalies are placed after the first two days, so a model has normal history before them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np
import polars as pl

from netassets.core.settings import landing_dir, safe_name, sample_start
from netassets.device_load.landing import PIPELINE, TIMESLOT_FORMAT

CLEAN_DAYS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="folder (default: the device_load landing folder)")
    parser.add_argument("--name", default="device_data_sample", help="file name stem")
    parser.add_argument("--start", default=sample_start(), help="first day, YYYY-MM-DD (NETASSETS_SAMPLE_START)")
    parser.add_argument("--days", type=int, default=7, help="number of days from --start")
    parser.add_argument("--regions", default="nl,be", help="comma-separated; each becomes a hostname prefix")
    parser.add_argument("--hosts", type=int, default=1, help="switches per region")
    parser.add_argument("--interfaces", type=int, default=2, help="interfaces per switch")
    parser.add_argument("--anomalies", type=int, default=3, help="injected anomalies per interface")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same files)")


def generate(args: argparse.Namespace) -> Path:
    regions = [safe_name(r.strip(), "region") for r in args.regions.split(",") if r.strip()]
    if not regions or args.days <= CLEAN_DAYS or min(args.hosts, args.interfaces) < 1 or args.anomalies < 0:
        raise ValueError(f"need regions, more than {CLEAN_DAYS} days, >= 1 host and interface, >= 0 anomalies")
    out = Path(args.out) if args.out else landing_dir(PIPELINE)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, record_path = out / f"{safe_name(args.name, 'name')}.csv", out / f"{args.name}.anomalies.json"
    if csv_path.exists():
        raise FileExistsError(f"{csv_path} exists: landing files are never overwritten, choose another --name")
    rng = np.random.default_rng(args.seed)
    start = dt.datetime.combine(dt.date.fromisoformat(args.start), dt.time())
    hours = args.days * 24
    times = [start + dt.timedelta(hours=h) for h in range(hours)]
    hour_of_day = np.arange(hours) % 24
    frames, injected = [], []
    for region in regions:
        for host in range(1, args.hosts + 1):
            hostname = f"{region}-dc-switch-{host:02d}"
            for port in range(args.interfaces):
                ifname = f"GigabitEthernet0/0/{port}"
                level = rng.uniform(2e7, 8e7)
                daily = 1.0 + 0.5 * np.sin(2 * np.pi * (hour_of_day - 8) / 24)
                mean = level * daily * rng.normal(1.0, 0.05, hours)
                peak = mean * rng.uniform(1.2, 1.6, hours)
                for start_hour in rng.choice(np.arange(CLEAN_DAYS * 24, hours - 3), args.anomalies, replace=False):
                    length, kind = int(rng.integers(1, 4)), str(rng.choice(["spike", "drop"]))
                    factor = rng.uniform(3, 5) if kind == "spike" else 0.05
                    mean[start_hour:start_hour + length] *= factor
                    peak[start_hour:start_hour + length] *= factor
                    injected.append({"router": f"{hostname}-{ifname}", "hostname": hostname, "ifname": ifname,
                                     "start": times[start_hour].strftime(TIMESLOT_FORMAT), "hours": length, "kind": kind})
                frames.append(pl.DataFrame({
                    "hostname": [hostname] * hours, "ifname": [ifname] * hours,
                    "timeslot": [t.strftime(TIMESLOT_FORMAT) for t in times],
                    "max_metric_value": peak, "mean_metric_value": mean,
                }))
    pl.concat(frames).write_csv(csv_path)
    record_path.write_text(json.dumps(sorted(injected, key=lambda a: (a["router"], a["start"])), indent=1))
    print(f"wrote {csv_path} ({hours * len(frames)} rows) and {record_path} ({len(injected)} anomalies)")
    return csv_path
