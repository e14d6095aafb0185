"""Device-load detector on real labelled data: 5 NAB network series, scored against combined_windows.json.

    python -m bench.device_load_nab [--epochs 15] [--slot 3]

Each 5-minute NAB series is cut into slots of ``--slot`` points; a slot's max and mean are
the device_data metrics, so the series goes through the pipeline's own SQL features, per-router
winsorising/robust scaling, windows, torchrun training (1 process) and DBSCAN labelling, with
the five series as five routers of one Embed-LSTM. Split 80/10/10 by time within each series;
labels are never used for training or thresholds. The LSTM row is scored twice: with the
fixed DBSCAN eps (the pipeline default) and with eps per series from the held-out k-distance
quantile (``--eps-quantile``, chosen before looking at scores). A flagged slot counts as a detection at its
last 5-minute timestamp. Baselines in the same run, on the same slots: a trailing rolling
z-score threshold and IsolationForest (fitted on the training slots). Also: the same model
trained on the real device_data.csv, held-out MSE next to persistence.
Prints a table and writes bench/results/device_load_nab.json. Skips where ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from netassets.core.settings import SHARED_DATA_DIR
from netassets.core.sql import load_sql
from netassets.core.torchrun import torchrun_command
from netassets.core.training import load_checkpoint
from netassets.device_load.detect import Detector, detect
from netassets.device_load.features import FEATURES, Scalers, build_windows, fit_scalers, split_of, time_cutoffs
from netassets.device_load.landing import read_device_file
from netassets.device_load.scoring import load_windows_file, nab_raw_score, nab_score, window_counts, window_scores

RESULTS = Path(__file__).parent / "results" / "device_load_nab.json"
Z_THRESHOLD, Z_WINDOW = 3.0, 96  # slots: one day of 15-minute slots
FOREST_CONTAMINATION = 0.01


def features_by_sql(raw: pl.DataFrame) -> pl.DataFrame:
    """The pipeline's feature SQL, run day by day on an in-memory device_load_raw table."""
    conn = duckdb.connect()
    conn.register("raw_rows", raw.to_arrow())
    conn.execute("CREATE TABLE device_load_raw AS SELECT * FROM raw_rows")
    sql = load_sql("device_load", "device_load_features")
    days = raw.select("day", "region").unique().sort("day", "region").iter_rows()
    return pl.concat([conn.execute(sql, {"day": d, "region": r}).pl() for d, r in days]).sort("router", "timeslot")


def nab_slots(root: Path, name: str, slot: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(slot rows shaped like device_load_raw, raw 5-minute series with its slot start)."""
    series = pl.read_csv(root / name, try_parse_dates=True).sort("timestamp")
    series = series.with_columns(pl.col("timestamp").dt.truncate(f"{5 * slot}m").alias("slot"))
    slots = series.group_by("slot", maintain_order=True).agg(
        pl.col("value").max().alias("max_metric_value"), pl.col("value").mean().alias("mean_metric_value"))
    router = name.split("/")[1].removesuffix(".csv")
    raw = slots.select(
        pl.col("slot").dt.date().alias("day"), pl.lit("nab").alias("region"), pl.lit(router).alias("router"),
        pl.lit("nab").alias("hostname"), pl.lit(router).alias("ifname"), pl.col("slot").alias("timeslot"),
        "max_metric_value", "mean_metric_value")
    return raw, series


def per_router_split(frame: pl.DataFrame, window: int, step_seconds: int) -> tuple[Scalers, np.ndarray, object]:
    """Scalers fitted per series on its own first 80 % (the series cover different periods)."""
    per_router, cuts = {}, {}
    for (router,), rows in frame.group_by("router", maintain_order=True):
        cuts[router] = time_cutoffs(rows["timeslot"].to_numpy().astype("datetime64[us]"))
        per_router.update(fit_scalers(rows, window, step_seconds, *cuts[router]).per_router)
    scalers = Scalers(sorted(per_router), window, step_seconds, "per series", "per series", per_router)
    windows, _ = build_windows(frame, scalers)
    split = np.zeros(len(windows), dtype=np.int8)
    for router, (train_end, val_end) in cuts.items():
        mine = windows.router_id == scalers.router_id(router)
        split[mine] = split_of(windows.target_time[mine], train_end, val_end)
    return scalers, split, windows


def train(work: Path, windows, split, scalers: Scalers, epochs: int) -> Path:
    windows.save(work / "windows.npz", split)
    scalers.save(work / "scalers.json")
    out = work / "model.pt"
    command = torchrun_command("netassets.device_load.train", [
        f"--windows={work / 'windows.npz'}", f"--scalers={work / 'scalers.json'}", f"--out={out}",
        f"--epochs={epochs}", "--patience=4"], nproc=1)
    log = subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    print("\n".join(line for line in log.stdout.splitlines() if " epoch " in line))
    return out


def rolling_z_flags(frame: pl.DataFrame) -> np.ndarray:
    """|x - mean| / std over the previous Z_WINDOW slots > Z_THRESHOLD, on max or mean."""
    flags = []
    for metric in ("max_metric_value", "mean_metric_value"):
        previous = pl.col(metric).shift(1).over("router")
        mean = previous.rolling_mean(Z_WINDOW, min_samples=Z_WINDOW // 4).over("router")
        std = previous.rolling_std(Z_WINDOW, min_samples=Z_WINDOW // 4, ddof=0).over("router")
        flags.append(frame.select(((pl.col(metric) - mean).abs() / std > Z_THRESHOLD).fill_null(False)).to_series().to_numpy())
    return flags[0] | flags[1]


def forest_flags(frame: pl.DataFrame, scalers: Scalers, train_rows: np.ndarray) -> np.ndarray:
    scaled = np.zeros((frame.height, len(FEATURES)))
    for (router,), rows in frame.with_row_index("_i").group_by("router"):
        scaled[rows["_i"].to_numpy()] = scalers.per_router[router].scale(rows.select(FEATURES).to_numpy())
    forest = IsolationForest(contamination=FOREST_CONTAMINATION, random_state=0).fit(scaled[train_rows])
    return forest.predict(scaled) == -1


def score(detections: dict[str, pl.DataFrame], series: dict[str, pl.DataFrame], labels) -> dict:
    """detections[name]: slot starts flagged; each counts at its slot's last 5-minute timestamp."""
    counts, nab = [], []
    for name, raw in series.items():
        flagged_slots = set(detections[name]["timeslot"].to_list())
        last = raw.group_by("slot").agg(pl.col("timestamp").max())
        marks = set(last.filter(pl.col("slot").is_in(list(flagged_slots)))["timestamp"].to_list())
        timestamps = raw["timestamp"].to_numpy().astype("datetime64[us]")
        flagged = raw["timestamp"].is_in(list(marks)).to_numpy()
        counts.append(window_counts(timestamps, flagged, labels[name]))
        nab.append(nab_raw_score(timestamps, flagged, labels[name]))
    return {**window_scores(counts), "nab_standard": nab_score(nab)}


def run_nab(root: Path, args, work: Path) -> dict:
    labels = load_windows_file(root / "combined_windows.json")
    raws, series = [], {}
    for name in labels:
        raw, series[name] = nab_slots(root, name, args.slot)
        raws.append(raw)
    frame = features_by_sql(pl.concat(raws))
    scalers, split, windows = per_router_split(frame, args.window, 5 * args.slot * 60)
    started = time.perf_counter()
    checkpoint = train(work / "nab", windows, split, scalers, args.epochs)
    train_seconds = time.perf_counter() - started
    detector = Detector.load(checkpoint)
    table, _ = detect(frame, None, detector, args.eps, args.min_samples, "validation")
    auto, _ = detect(frame, None, detector, args.eps, args.min_samples, "validation", eps_quantile=args.eps_quantile)
    router_of = {name: name.split("/")[1].removesuffix(".csv") for name in labels}

    def by_file(flags_frame: pl.DataFrame) -> dict[str, pl.DataFrame]:
        return {name: flags_frame.filter(pl.col("router") == router_of[name]) for name in labels}

    train_rows = np.zeros(frame.height, dtype=bool)
    for (router,), rows in frame.with_row_index("_i").group_by("router"):
        cut = time_cutoffs(rows["timeslot"].to_numpy().astype("datetime64[us]"))[0]
        train_rows[rows.filter(pl.col("timeslot") < cut.astype("datetime64[us]").item())["_i"].to_numpy()] = True
    results = {
        "embed_lstm_dbscan": score(by_file(table.filter(pl.col("is_anomaly")).rename({"time": "timeslot"})), series, labels),
        f"embed_lstm_dbscan_kdist{args.eps_quantile}": score(by_file(auto.filter(pl.col("is_anomaly")).rename({"time": "timeslot"})), series, labels),
        "rolling_zscore": score(by_file(frame.filter(pl.Series(rolling_z_flags(frame)))), series, labels),
        "isolation_forest": score(by_file(frame.filter(pl.Series(forest_flags(frame, scalers, train_rows)))), series, labels),
    }
    state = load_checkpoint(checkpoint)
    return {"detectors": results, "lstm_flagged_share": float(table["is_anomaly"].mean()),
            "lstm_kdist_flagged_share": float(auto["is_anomaly"].mean()),
            "forecast_mse": state["scores"], "best_epoch": state["best_epoch"], "train_seconds": train_seconds,
            "slots": frame.height, "windows": int(len(windows))}


def run_device_data(path: Path, args, work: Path) -> dict:
    """The pipeline's own path on the real sample: one global time split, hourly windows of 24."""
    raw = read_device_file(path).drop("source_file", "source_line")
    frame = features_by_sql(raw)
    times = frame["timeslot"].to_numpy().astype("datetime64[us]")
    train_end, val_end = time_cutoffs(times)
    scalers = fit_scalers(frame, 24, 3600, train_end, val_end)
    windows, _ = build_windows(frame, scalers)
    split = split_of(windows.target_time, train_end, val_end)
    checkpoint = train(work / "device_data", windows, split, scalers, args.epochs)
    detector = Detector.load(checkpoint)
    test_day = dt.date.fromisoformat(str(val_end)[:10]) + dt.timedelta(days=1)
    table, _ = detect(frame, test_day, detector, args.eps, args.min_samples, "validation")
    state = load_checkpoint(checkpoint)
    return {"forecast_mse": state["scores"], "best_epoch": state["best_epoch"], "windows": int(len(windows)),
            "test_day": test_day.isoformat(), "test_day_anomaly_rate": float(table["is_anomaly"].mean())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--slot", type=int, default=3, help="5-minute points per slot")
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--eps", type=float, default=1.0)
    parser.add_argument("--min-samples", type=int, default=5)
    parser.add_argument("--eps-quantile", type=float, default=0.99, help="second LSTM row: eps from held-out k-distances")
    args = parser.parse_args(argv)
    root = SHARED_DATA_DIR / "nab"
    if not root.is_dir():
        print(f"skipping device_load_nab: {root} not found (the shared real datasets are absent)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        nab = run_nab(root, args, Path(tmp))
        device = run_device_data(SHARED_DATA_DIR / "device_load" / "device_data.csv", args, Path(tmp))
    print(f"\nNAB: 5 series, {nab['slots']} slots of {5 * args.slot} min, window {args.window}, "
          f"DBSCAN eps {args.eps} min_samples {args.min_samples}, training {nab['train_seconds']:.0f} s")
    print(f"{'detector':<30}{'precision':>10}{'recall':>8}{'F1':>7}{'events':>8}{'windows hit':>13}{'NAB std':>9}")
    for name, s in nab["detectors"].items():
        print(f"{name:<30}{s['precision']:>10.3f}{s['recall']:>8.3f}{s['f1']:>7.3f}{s['events']:>8}"
              f"{s['windows_detected']:>8}/{s['windows']:<4}{s['nab_standard']:>9.1f}")
    print(f"Embed-LSTM+DBSCAN flags {nab['lstm_flagged_share']:.1%} of slots (fixed eps), "
          f"{nab['lstm_kdist_flagged_share']:.1%} (eps from k-distance quantile {args.eps_quantile})")
    print(f"\n{'forecast MSE (scaled)':<22}{'best epoch':>11}{'split':>6}{'Embed-LSTM':>12}{'persistence':>13}")
    for data, result in (("NAB slots", nab), ("device_data.csv", device)):
        for split, s in result["forecast_mse"].items():
            print(f"{data:<22}{result['best_epoch']:>11}{split:>6}{s['model_mse']:>12.4f}{s['persistence_mse']:>13.4f}")
    print(f"device_data.csv anomaly rate on {device['test_day']}: {device['test_day_anomaly_rate']:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "nab": nab, "device_data": device}, indent=1, default=str))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
