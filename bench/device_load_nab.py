"""Device-load detectors on real labelled data, scored causally: 5 NAB network series, combined_windows.json.

    python -m bench.device_load_nab [--epochs 15] [--seeds 0 1 2]

Causal protocol. Each series is resampled to its inferred step (5 minutes here) by
``features.regular_grid`` and goes through the pipeline's own SQL features, per-router robust
scaling, windows and torchrun training (one process), the five series being five routers of
one Embed-LSTM. Per series, the first 10 % of its points train, the next 5 % validate (early
stopping), and the remaining 85 % are scored: that first 15 % is exactly NAB's probationary
period, which NAB never scores, so every scored point comes after everything any detector was
fitted on. No detector flags a point before the cut; every score at a point uses only that
point and earlier ones (running error distribution, trailing windows). Thresholds are fixed a
priori (Numenta's likelihood threshold 1 - 1e-5 for the likelihood and the windowed Gaussian,
|z| > 3, contamination 1 %), never read from labels; every detector gets the same
suppression of repeated alarms (``--refractory`` points, over the whole series, then cut to the
scored points), so no baseline is handicapped.

Detectors, all in the same run on the same points:

- ``embed_lstm_likelihood`` (the default detector): Embed-LSTM forecast errors -> anomaly likelihood;
- ``embed_lstm_seed_dbscan``: the same errors -> the seed's DBSCAN (eps 1, min_samples 150);
- ``persistence_likelihood`` (a baseline): the same likelihood on persistence errors, no model;
- ``windowed_gaussian`` (NAB's simple baseline), ``rolling_zscore`` (one day trailing),
  ``isolation_forest`` (fitted on the first 15 %).

Also the pipeline's forecaster on the real device_data.csv: the test-split Evaluation against
persistence and the window mean. Prints tables and writes bench/results/device_load_nab.json.
Skips where ../shared/data is absent.
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

from netassets.core.evaluation import Evaluation, split_of, time_cutoffs
from netassets.core.settings import SHARED_DATA_DIR
from netassets.core.sql import load_sql
from netassets.core.torchrun import torchrun_command
from netassets.device_load.baselines import rolling_zscore, windowed_gaussian
from netassets.device_load.config import TrainConfig
from netassets.device_load.detect import Detector, SeedDbscan, detect
from netassets.device_load.features import (
    FEATURES, SPLIT_RULE, Scalers, build_windows, fit_scalers, infer_step_seconds, regular_grid,
)
from netassets.device_load.landing import read_device_file
from netassets.device_load.likelihood import LikelihoodConfig, anomaly_likelihood, flags, suppress_repeats
from netassets.device_load.scoring import (
    load_windows_file, nab_raw_score, nab_score, probationary_length, window_counts, window_scores,
)
from netassets.device_load.store import EVALUATION, WEIGHTS, WORKER, worker_args

RESULTS = Path(__file__).parent / "results" / "device_load_nab.json"
TRAIN_SHARE, VAL_SHARE = 0.10, 0.05  # together NAB's 15 % probationary period
Z_THRESHOLD, Z_WINDOW = 3.0, 288  # one day of 5-minute points
FOREST_CONTAMINATION = 0.01
DEFAULT = "embed_lstm_likelihood"
NAB_SPLIT_RULE = "per series by time: first 10 % train, next 5 % validate, last 85 % test (NAB's scored part)"
# persistence_likelihood is the detector with persistence in place of the LSTM: the simplest
# forecaster under the same likelihood rule, so a baseline the model must beat, not an ablation.
BASELINES = ("windowed_gaussian", "rolling_zscore", "isolation_forest", "persistence_likelihood")


def features_by_sql(raw: pl.DataFrame) -> pl.DataFrame:
    """The pipeline's feature SQL, run day by day on an in-memory device_load_raw table."""
    conn = duckdb.connect()
    conn.register("raw_rows", raw.to_arrow())
    conn.execute("CREATE TABLE device_load_raw AS SELECT * FROM raw_rows")
    sql = load_sql("device_load", "device_load_features")
    days = raw.select("day", "region").unique().sort("day", "region").iter_rows()
    return pl.concat([conn.execute(sql, {"day": d, "region": r}).pl() for d, r in days]).sort("router", "timeslot")


def router_of(name: str) -> str:
    return name.split("/")[1].removesuffix(".csv")


def load_series(root: Path, name: str) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """(device_data rows on the regular grid, the raw NAB series with its grid time, step seconds)."""
    series = pl.read_csv(root / name, try_parse_dates=True).sort("timestamp").with_columns(pl.col("value").cast(pl.Float64))
    router = router_of(name)
    raw = series.select(pl.lit("nab").alias("region"), pl.lit(router).alias("router"), pl.lit("nab").alias("hostname"),
                        pl.lit(router).alias("ifname"), pl.col("timestamp").alias("timeslot"),
                        pl.col("value").alias("max_metric_value"), pl.col("value").alias("mean_metric_value"))
    step = infer_step_seconds(raw)
    return regular_grid(raw, step), series.with_columns(pl.col("timestamp").dt.truncate(f"{step}s").alias("grid")), step


def split_series(frame: pl.DataFrame, window: int, step_seconds: int):
    """Scalers fitted per series on its own training part; window split and test start per series."""
    per_router, cuts = {}, {}
    for (router,), rows in frame.group_by("router", maintain_order=True):
        cuts[router] = time_cutoffs(rows["timeslot"].to_numpy().astype("datetime64[us]"), TRAIN_SHARE, VAL_SHARE)
        per_router.update(fit_scalers(rows, window, step_seconds, *cuts[router]).per_router)
    scalers = Scalers(sorted(per_router), window, step_seconds, "per series", "per series", per_router)
    windows, skipped = build_windows(frame, scalers)
    if skipped:
        raise ValueError(f"series without windows: {skipped}")
    split = np.zeros(len(windows), dtype=np.int8)
    for router, (train_end, val_end) in cuts.items():
        mine = windows.router_id == scalers.router_id(router)
        split[mine] = split_of(windows.target_time[mine], train_end, val_end)
    return scalers, windows, split, {r: c[1] for r, c in cuts.items()}


def train(work: Path, windows, split, scalers: Scalers, epochs: int, seed: int, split_rule: str) -> tuple[Path, dict]:
    """One training run of the pipeline's worker in ``work`` (its run folder): the weights' path, the evaluation."""
    work.mkdir(parents=True, exist_ok=True)
    windows.save(work / "windows.npz", split)
    scalers.save(work / "scalers.json")
    args = worker_args(TrainConfig(epochs=epochs, patience=4, seed=seed), work, split_rule,
                       windows=work / "windows.npz", scalers=work / "scalers.json")
    command = torchrun_command(WORKER, args, nproc=1)
    subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    return work / WEIGHTS, json.loads((work / EVALUATION).read_text())


def forest_scores(frame: pl.DataFrame, scalers: Scalers, test_start: dict) -> dict[str, np.ndarray]:
    """IsolationForest on the scaled features, fitted on every series' first 15 %; True = outlier."""
    scaled, before = np.zeros((frame.height, len(FEATURES))), np.zeros(frame.height, dtype=bool)
    for (router,), rows in frame.with_row_index("_i").group_by("router"):
        index = rows["_i"].to_numpy()
        scaled[index] = scalers.per_router[router].scale(rows.select(FEATURES).to_numpy())
        before[index] = rows["timeslot"].to_numpy().astype("datetime64[us]") < test_start[router]
    forest = IsolationForest(contamination=FOREST_CONTAMINATION, random_state=0).fit(scaled[before])
    outlier = forest.predict(scaled) == -1
    return {router: outlier[rows["_i"].to_numpy()] for (router,), rows in frame.with_row_index("_i").group_by("router")}


def grid_flags_to_series(grid_times: np.ndarray, grid_flags: np.ndarray, raw: pl.DataFrame, test_start) -> np.ndarray:
    """Flags on the raw NAB timestamps: a flagged grid step marks the last raw point in it; none before the cut."""
    flagged_steps = set(grid_times[grid_flags].tolist())
    last = raw.with_row_index("_i").group_by("grid").agg(pl.col("_i").max())
    hits = last.filter(pl.col("grid").is_in(list(flagged_steps)))["_i"].to_numpy()
    out = np.zeros(raw.height, dtype=bool)
    out[hits] = True
    out &= raw["timestamp"].to_numpy().astype("datetime64[us]") >= test_start
    return out


def score(flags_by_file: dict[str, np.ndarray], series: dict[str, pl.DataFrame], labels) -> dict:
    per_file, counts, nab = {}, [], []
    for name, raw in series.items():
        timestamps = raw["timestamp"].to_numpy().astype("datetime64[us]")
        c = window_counts(timestamps, flags_by_file[name], labels[name])
        n = nab_raw_score(timestamps, flags_by_file[name], labels[name])
        counts.append(c)
        nab.append(n)
        per_file[router_of(name)] = {"nab_standard": nab_score([n]), "f1": window_scores([c])["f1"],
                                     "flags": int(flags_by_file[name].sum())}
    return {**window_scores(counts), "nab_standard": nab_score(nab), "per_series": per_file}


def detection_evaluation(run: dict, baselines: dict, rows: int) -> Evaluation:
    """The default detector against NAB's and the project's simple baselines, NAB standard score on the scored points."""
    scores = {name: {"nab_standard": s["nab_standard"], "window_f1": s["f1"]}
              for name, s in {DEFAULT: run[DEFAULT], **{b: baselines[b] for b in BASELINES}}.items()}
    return Evaluation(model=DEFAULT, metric="nab_standard", higher_is_better=True, scores=scores, rows=rows,
                      split_rule=NAB_SPLIT_RULE, notes=("embed_lstm_seed_dbscan is reported beside it as the seed's "
                                                        "option, not a baseline",))


def run_nab(root: Path, args, work: Path) -> dict:
    labels = load_windows_file(root / "combined_windows.json")
    grids, series, steps = [], {}, set()
    for name in labels:
        grid, series[name], step = load_series(root, name)
        grids.append(grid)
        steps.add(step)
    if len(steps) != 1:
        raise ValueError(f"the NAB series have different steps {sorted(steps)}; one model needs one step")
    step = steps.pop()
    frame = features_by_sql(pl.concat(grids))
    scalers, windows, split, test_start = split_series(frame, args.window, step)
    likelihood = LikelihoodConfig(refractory=args.refractory)
    seed_dbscan = SeedDbscan()
    rows_of = {router: rows for (router,), rows in frame.group_by("router", maintain_order=True)}
    scored = {}
    for name, raw in series.items():
        router = router_of(name)
        times = raw["timestamp"].to_numpy().astype("datetime64[us]")
        first = int(np.searchsorted(times, test_start[router]))
        scored[router] = {"points": len(times), "first_scored_index": first,
                          "nab_probationary_length": probationary_length(len(times)),
                          "first_scored_time": str(test_start[router])}

    def on_series(name: str, grid_times: np.ndarray, grid_flags: np.ndarray) -> np.ndarray:
        return grid_flags_to_series(grid_times, grid_flags, series[name], test_start[router_of(name)])

    # Baselines: causal scores on each series' grid values, thresholds fixed a priori.
    forest = forest_scores(frame, scalers, test_start)
    baseline_flags = {b: {} for b in BASELINES}
    for name in labels:
        rows = rows_of[router_of(name)]
        values, grid_times = rows["max_metric_value"].to_numpy(), rows["timeslot"].to_numpy().astype("datetime64[us]")
        alarms = {
            "windowed_gaussian": windowed_gaussian(values) > likelihood.threshold,
            "rolling_zscore": rolling_zscore(values, Z_WINDOW, Z_WINDOW // 4) > Z_THRESHOLD,
            "isolation_forest": forest[router_of(name)],
        }
        # Every detector suppresses repeats over the whole series and is then cut to the scored
        # points, as the likelihood detectors are (a detector running live carries its state into
        # the scored part): an alarm just before the cut silences the points after it for all.
        for b, alarm in alarms.items():
            kept = suppress_repeats(alarm, args.refractory) & (grid_times >= test_start[router_of(name)])
            baseline_flags[b][name] = on_series(name, grid_times, kept)
        persistence_error = np.abs(np.diff(values, prepend=values[0]))
        lik_flags = flags(anomaly_likelihood(persistence_error, likelihood), likelihood) & (grid_times >= test_start[router_of(name)])
        baseline_flags["persistence_likelihood"][name] = on_series(name, grid_times, lik_flags)
    results = {b: score(f, series, labels) for b, f in baseline_flags.items()}

    runs = []
    for seed in args.seeds:
        started = time.perf_counter()
        weights, evaluation = train(work / f"nab_seed{seed}", windows, split, scalers, args.epochs, seed, NAB_SPLIT_RULE)
        detector = Detector.load(weights)
        run = {"seed": seed, "train_seconds": time.perf_counter() - started, "forecast_evaluation": evaluation}
        for method, label in (("likelihood", DEFAULT), ("seed_dbscan", "embed_lstm_seed_dbscan")):
            flagged = {}
            for name in labels:
                router = router_of(name)
                rows = rows_of[router]
                end = rows["timeslot"].max() + dt.timedelta(seconds=step)
                found = detect(rows, detector, (test_start[router].astype("datetime64[us]").item(), end),
                               method, likelihood, seed_dbscan).table
                alarms = found["is_anomaly"].to_numpy()
                if method == "seed_dbscan":  # the likelihood suppresses its repeats itself; give DBSCAN the same
                    alarms = suppress_repeats(alarms, args.refractory)
                flagged[name] = on_series(name, found["time"].to_numpy().astype("datetime64[us]"), alarms)
            run[label] = score(flagged, series, labels)
        run["detection_evaluation"] = detection_evaluation(run, results, sum(
            v["points"] - v["first_scored_index"] for v in scored.values())).to_dict()
        runs.append(run)
    return {"detectors": results, "lstm_runs": runs, "scored_points": scored, "step_seconds": step,
            "grid_points": frame.height, "windows": int(len(windows)),
            "split_windows": {s: int((split == i).sum()) for i, s in enumerate(("train", "val", "test"))},
            "likelihood": likelihood.to_dict()}


def run_device_data(path: Path, args, work: Path) -> dict:
    """The pipeline's own path on the real sample: inferred step, one global 80/10/10 time split, windows of 24."""
    raw = read_device_file(path).drop("source_file", "source_line")
    frame = features_by_sql(raw)
    step = infer_step_seconds(frame)
    train_end, val_end = time_cutoffs(frame["timeslot"].to_numpy().astype("datetime64[us]"), 0.8, 0.1)
    scalers = fit_scalers(frame, args.window, step, train_end, val_end)
    windows, _ = build_windows(frame, scalers)
    split = split_of(windows.target_time, train_end, val_end)
    evaluations = [train(work / f"device_seed{seed}", windows, split, scalers, args.epochs, seed, SPLIT_RULE)[1] for seed in args.seeds]
    return {"step_seconds": step, "windows": int(len(windows)), "evaluations": evaluations}


def print_tables(nab: dict, device: dict | None) -> None:
    rows = {name: [s] for name, s in nab["detectors"].items()}
    for run in nab["lstm_runs"]:
        for label in (DEFAULT, "embed_lstm_seed_dbscan"):
            rows.setdefault(label, []).append(run[label])
    print(f"\nNAB, 5 series, causal: {sum(v['points'] - v['first_scored_index'] for v in nab['scored_points'].values())} "
          f"scored points (each series after its first 15 %); LSTM rows: one per seed")
    routers = list(nab["detectors"]["windowed_gaussian"]["per_series"])
    print(f"{'detector':<26}{'NAB std':>8}{'F1':>6}{'prec':>6}{'recall':>7}{'events':>7}  " + " ".join(f"{r[:14]:>14}" for r in routers))
    for name, results in rows.items():
        for s in results:
            print(f"{name:<26}{s['nab_standard']:>8.1f}{s['f1']:>6.2f}{s['precision']:>6.2f}{s['recall']:>7.2f}{s['events']:>7}  "
                  + " ".join(f"{s['per_series'][r]['nab_standard']:>14.1f}" for r in routers))
    print("\ndetection verdict (core.evaluation), one line per seed:")
    for run in nab["lstm_runs"]:
        print(f"  seed {run['seed']}: {Evaluation.from_dict(run['detection_evaluation']).verdict}")
    print("\nforecast test MSE (scaled), verdict from core.evaluation:")
    for data, evaluations in (("NAB", [r["forecast_evaluation"] for r in nab["lstm_runs"]]),
                              ("device_data.csv", device["evaluations"] if device else [])):
        for e in evaluations:
            print(f"  {data}: {Evaluation.from_dict(e).verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--refractory", type=int, default=LikelihoodConfig().refractory,
                        help="points after an alarm in which no detector alarms again")
    args = parser.parse_args(argv)
    root = SHARED_DATA_DIR / "nab"
    if not root.is_dir():
        print(f"skipping device_load_nab: {root} not found (the shared real datasets are absent)")
        return 0
    device_csv = SHARED_DATA_DIR / "device_load" / "device_data.csv"
    with tempfile.TemporaryDirectory() as tmp:
        nab = run_nab(root, args, Path(tmp))
        device = run_device_data(device_csv, args, Path(tmp)) if device_csv.is_file() else None
    print_tables(nab, device)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"causal": True, "args": vars(args), "nab": nab, "device_data": device},
                                  indent=1, default=str))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
