"""BandwidthLSTM (delta formulation) vs every baseline, on the real HSDPA traces and on generated DWCP data.

    python -m bench.dwcp_real [--horizons 1,3,5] [--epochs 40] [--full-size]
    python -m bench.dwcp_real --synthetic [--horizons 1,15] [--days 2]
    python -m bench.dwcp_real --seed 7 --out bench/results/dwcp_real_seed7.json   # other training seeds (also seed 1)

Real traces (default): throughput only, windows of 20 samples (~1 s each) from the 80 HSDPA
traces, split by trace (held-out journeys). ``--synthetic``: the demo's generated data (regions
us-east-1 and eu-west-1, 2 links each, from 2024-01-01), all 9 features and 4 targets, horizon
in minutes, split chronologically 70/15/15 as ``dwcp_windows`` does; the noise-free oracle is
shown beside (a ceiling, not a baseline). Either way each horizon is trained through the same
torchrun entry point the asset uses (1 process) and judged by the same
``report.model_evaluation`` as the ``dwcp_bandwidth_lstm`` asset: persistence, mean and harmonic
mean of the last 5 values, ridge AR(20) (penalty chosen on validation), all on the same test
windows in the same run. Prints test RMSE per horizon, predictor and target with the ratio to
persistence and the verdict, and the validation figures every choice was made on; writes
bench/results/dwcp_real.json or dwcp_synthetic_<days>d.json (or --out).
Skips the real traces with a message when ../shared/data is absent.
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

import numpy as np
import polars as pl

from netassets.core.settings import SHARED_DATA_DIR
from netassets.core.torchrun import torchrun_command
from netassets.dwcp import report, sample
from netassets.dwcp.config import TrainConfig
from netassets.dwcp.runs import HISTORY, PREDICTIONS
from netassets.dwcp.baselines import PERSISTENCE, all_baselines
from netassets.dwcp.real_traces import SPLIT_RULE, hsdpa_windows
from netassets.dwcp.schema import FEATURES, LINK, TARGETS
from netassets.dwcp.windows import CHRONOLOGICAL_RULE, Windows, build_windows, chronological_split

RESULTS = Path(__file__).resolve().parent / "results"
SMALL = {"lstm_sizes": [64, 32, 16], "dense_sizes": [32, 16, 8]}
SYNTHETIC_REGIONS = ("us-east-1", "eu-west-1")
SYNTHETIC_START = "2024-01-01"  # fixed, so the figures do not move with NETASSETS_SAMPLE_START


def synthetic_windows(days: int, horizon: int) -> Windows:
    """The demo's generated data as dwcp_windows turns it into windows (oracle included)."""
    start = dt.date.fromisoformat(SYNTHETIC_START)
    frame = pl.concat([sample.day_frame(region, start + dt.timedelta(days=d), 2, 42)
                       for region in SYNTHETIC_REGIONS for d in range(days)])
    windows = build_windows(frame, link_columns=LINK, time_column="timestamp", features=FEATURES, targets=TARGETS,
                            window=20, horizon=horizon, step=60)
    windows.split = chronological_split(windows.target_time)
    windows.extra["oracle"] = sample.expected_targets(windows.target_time)
    return windows


def run_horizon(windows: Windows, split_rule: str, args: argparse.Namespace, work: Path) -> dict:
    horizon = windows.horizon
    windows_path = windows.save(work / f"windows_h{horizon}.npz")
    out = work / f"run_h{horizon}"
    config = TrainConfig(epochs=args.epochs, batch_size=128, early_stopping_patience=6, lr_patience=2, seed=args.seed,
                         **({} if args.full_size else SMALL))
    config_path = config.write(work / f"config_h{horizon}.json")
    started = time.perf_counter()
    subprocess.run(torchrun_command("netassets.dwcp.train", [f"--config={config_path}", f"--windows={windows_path}",
                                                             f"--out={out}"], nproc=1), check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    with np.load(out / PREDICTIONS) as saved:
        index, predicted = saved["index"], saved["prediction"]
    evaluation = report.model_evaluation(windows, index, predicted, split_rule)
    actual = windows.y[index].astype(np.float64)
    test_rmse = {name: dict(zip(windows.targets, np.sqrt(((f - actual) ** 2).mean(axis=0)).tolist()))
                 for name, f in report.forecasts(windows, index, predicted).items()}
    history = json.loads((out / HISTORY).read_text())
    val = windows.part("val")
    val_actual = windows.y[val].astype(np.float64)
    spread = np.where(val_actual.std(axis=0) > 0, val_actual.std(axis=0), 1.0)
    validation = {name: float((np.sqrt(((f - val_actual) ** 2).mean(axis=0)) / spread).mean())
                  for name, f in all_baselines(windows, val).items()}
    best_val = history["start_val_loss"] if history["best_epoch"] == 0 else next(
        e["val_loss"] for e in history["epochs"] if e["epoch"] == history["best_epoch"])
    validation.update({"linear start (epoch 0)": history["start_val_loss"], "best epoch, network share 1": best_val,
                       "BandwidthLSTM (final: network share chosen on validation)":
                           min(history["net_share_val"].values()) if history.get("net_share_val") else best_val})
    return {"horizon": horizon, "windows": len(windows),
            "validation_mean_nrmse": validation, "linear_start": history.get("linear_start"),
            "windows_train_val_test": [len(windows.part(s)) for s in ("train", "val", "test")],
            "epochs_run": len(history["epochs"]), "best_epoch": history["best_epoch"], "net_share": history.get("net_share"), "train_seconds": seconds,
            "test_rmse": test_rmse, "evaluation": evaluation.to_dict()}


def print_table(results: list[dict]) -> None:
    header = f"{'horizon':>7} {'target':<16} {'predictor':<28} {'test RMSE':>10} {'/persist':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        for name, per_target in r["test_rmse"].items():
            for target, rmse in per_target.items():
                persist = r["test_rmse"][PERSISTENCE][target]
                print(f"{r['horizon']:>7} {target:<16} {name:<28} {rmse:>10.4f} {rmse / persist:>8.3f}")
        print(f"{'':>7} {r['evaluation']['verdict']}; {r['epochs_run']} epochs (best {r['best_epoch']}) "
              f"in {r['train_seconds']:.0f} s")
        print(f"{'':>7} validation mean_nrmse: " + ", ".join(f"{k} {v:.4f}" for k, v in r["validation_mean_nrmse"].items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="the demo's generated data instead of HSDPA")
    parser.add_argument("--horizons", help="steps ahead (default 1,3,5 on HSDPA, 1,15 minutes on synthetic)")
    parser.add_argument("--days", type=int, default=2, help="synthetic days (the demo generates 2)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", help="where to write the JSON (default bench/results/dwcp_real.json or dwcp_synthetic_<days>d.json)")
    parser.add_argument("--full-size", action="store_true", help="the guide's 256/128/64 LSTM (slow on CPU)")
    args = parser.parse_args()
    horizons = [int(h) for h in (args.horizons or ("1,15" if args.synthetic else "1,3,5")).split(",")]
    folder = SHARED_DATA_DIR / "bandwidth" / "hsdpa"
    if args.synthetic:
        data, units, rule = f"generated: {', '.join(SYNTHETIC_REGIONS)} x 2 links x {args.days} days", "minutes", CHRONOLOGICAL_RULE
        make = lambda h: synthetic_windows(args.days, h)  # noqa: E731
    elif not folder.is_dir():
        print(f"skipping dwcp_real: real traces not found at {folder}")
        return 0
    else:
        data, units, rule = str(folder), "samples (~1 s)", SPLIT_RULE
        make = lambda h: hsdpa_windows(folder, window=20, horizon=h)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="dwcp_real_") as tmp:
        results = [run_horizon(make(h), rule, args, Path(tmp)) for h in horizons]
    print_table(results)
    name = f"dwcp_synthetic_{args.days}d" if args.synthetic else "dwcp_real"
    path = Path(args.out) if args.out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "data": data, "model": "full" if args.full_size else SMALL,
                                "split": rule, "horizon_units": units, "results": results}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
