"""BandwidthLSTM in throughput-only mode on the real HSDPA traces vs persistence and harmonic mean.

    python -m bench.dwcp_real [--horizons 1,3,5] [--epochs 15] [--full-size]

For each horizon (in samples, ~1 s each): windows of 20 samples from the 80 traces, split by
trace (held-out journeys), trained through the same torchrun entry point the asset uses
(1 process), scored on the test traces next to the two classic throughput predictors in the
same run. Prints a table with RMSE ratios to persistence; writes bench/results/dwcp_real.json.
Skips with a message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from netassets.core.settings import SHARED_DATA_DIR
from netassets.core.torchrun import torchrun_command
from netassets.dwcp import report
from netassets.dwcp.artifacts import PREDICTIONS
from netassets.dwcp.real_traces import hsdpa_windows

RESULTS = Path(__file__).resolve().parent / "results" / "dwcp_real.json"
SMALL = {"lstm_sizes": [64, 32, 16], "dense_sizes": [32, 16, 8]}


def run_horizon(folder: Path, horizon: int, args: argparse.Namespace, work: Path) -> dict:
    windows = hsdpa_windows(folder, window=20, horizon=horizon)
    windows_path = windows.save(work / f"hsdpa_h{horizon}.npz")
    out = work / f"run_h{horizon}"
    config = {"windows_path": str(windows_path), "out_dir": str(out), "epochs": args.epochs, "batch_size": 128,
              "early_stopping_patience": 5, "lr_patience": 2, "seed": args.seed, **({} if args.full_size else SMALL)}
    config_path = work / f"config_h{horizon}.json"
    config_path.write_text(json.dumps(config))
    started = time.perf_counter()
    subprocess.run(torchrun_command("netassets.dwcp.train", [f"--config={config_path}"], nproc=1), check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    with np.load(out / PREDICTIONS) as saved:
        index, predicted = saved["index"], saved["prediction"]
    actual = windows.y[index]
    evaluation = report.evaluate(actual, {
        "BandwidthLSTM": predicted, "persistence": windows.last[index],
        "harmonic mean (5)": windows.extra["harmonic_mean"][index]}, windows.targets)
    history = json.loads((out / "history.json").read_text())
    return {"horizon": horizon, "windows": len(windows), "test_windows": len(index),
            "traces": windows.stats["traces"], "epochs_run": len(history["epochs"]), "train_seconds": seconds,
            "scores": {name: r["per_target"]["throughput_mbps"] for name, r in evaluation.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", default="1,3,5")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--full-size", action="store_true", help="the guide's 256/128/64 LSTM (slow on CPU)")
    args = parser.parse_args()
    folder = SHARED_DATA_DIR / "bandwidth" / "hsdpa"
    if not folder.is_dir():
        print(f"skipping dwcp_real: real traces not found at {folder}")
        return 0
    with tempfile.TemporaryDirectory(prefix="dwcp_real_") as tmp:
        results = [run_horizon(folder, int(h), args, Path(tmp)) for h in args.horizons.split(",")]

    header = f"{'horizon':>7} {'predictor':<18} {'MAE':>7} {'RMSE':>7} {'MAPE %':>8} {'R2':>7} {'corr':>6} {'RMSE/persist':>12}"
    print(header)
    print("-" * len(header))
    for r in results:
        persist = r["scores"]["persistence"]["rmse"]
        for name, s in r["scores"].items():
            r2 = s["r2_score"] if s["r2_score"] is not None else float("nan")
            corr = s["correlation"] if s["correlation"] is not None else float("nan")
            print(f"{r['horizon']:>7} {name:<18} {s['mae']:>7.3f} {s['rmse']:>7.3f} {s['mape']:>8.1f} {r2:>7.3f} "
                  f"{corr:>6.3f} {s['rmse'] / persist:>12.3f}")
        best = min(r["scores"], key=lambda n: r["scores"][n]["rmse"])
        print(f"{'':>7} best by RMSE: {best}; LSTM trained {r['epochs_run']} epochs in {r['train_seconds']:.0f} s on "
              f"{r['windows'] - r['test_windows']} train+val windows, {r['test_windows']} test windows")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "dwcp_real", "data": str(folder), "model": "full" if args.full_size
                                   else SMALL, "units": "Mbps; horizon in samples (~1 s)", "results": results}, indent=1))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
