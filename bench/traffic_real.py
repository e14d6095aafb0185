"""The next-packet LSTM on the real CIC-DoHBrw-2020 flows, split by capture day, judged on test.

    python -m bench.traffic_real [--epochs 40] [--val-fraction 0.25 --test-fraction 0.25]

Reads ``../shared/data/traffic/cicdoh20_{valid,test}.json`` in place (1,200 flows; skips with a
message where they are absent) through the pipeline's own code: ``readers.index_files`` indexes
them, ``split.assign_splits`` splits them, ``train.main`` trains, picks the best epoch on
validation and scores the test flows once, next to persistence (next = current), the training
mean packet by position, and persistence with the training mean first packet for packet 1, on
exactly those flows.

The split is by capture day, not by file. The two files are not separate captures: both cover
the same capture sessions on the same days (2020-01-13 .. 2020-03-31), and 116 TCP connections
have flows in both, so training on one file and testing on the other would test on connections
the model trained on. The flows' first-packet timestamps are relative (0.0); the capture time
is the Unix time in each flow's pcap name (``.../<unix seconds>.pcap``), whose UTC day becomes
the flow's day partition, as if the flows had landed in ``landing/traffic/cicdoh20/<day>/``.
With 8 days, 25 % / 25 % gives 2 validation and 2 test days (15 % would leave one 3-flow day
to validate on). Each attack tool was captured on its own days, so the test days hold a
tunnel tool (DNS2TCP) that training never saw: a hard, honest hold-out.

Prints a table; writes bench/results/traffic_real.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from netassets.core.settings import SHARED_DATA_DIR

RESULTS = Path(__file__).resolve().parent / "results" / "traffic_real.json"
DATA = SHARED_DATA_DIR / "traffic"
FILES = ("cicdoh20_valid.json", "cicdoh20_test.json")
CAPTURE_TIME = re.compile(r"/(\d+)\.pcap$")


def capture_day(root: Path, source_file: str, offset: int, length: int) -> dt.date:
    """The UTC day of the capture named in the flow's pcap path (its own timestamps start at 0)."""
    with open(root / source_file, "rb") as handle:
        handle.seek(offset)
        flow = json.loads(handle.read(length))
    match = CAPTURE_TIME.search(flow.get("source_file", ""))
    if match is None:
        raise ValueError(f"{root / source_file} at byte {offset}: no <unix time>.pcap in source_file {flow.get('source_file')!r}")
    return dt.datetime.fromtimestamp(int(match.group(1)), dt.timezone.utc).date()


def flow_index(root: Path) -> pl.DataFrame:
    from netassets.traffic.readers import index_files

    index = index_files([root / name for name in FILES], root).frame
    days = [capture_day(root, *row) for row in index.select("source_file", "byte_offset", "byte_length").iter_rows()]
    return index.with_columns(day=pl.Series(days, dtype=pl.Date), site=pl.lit("cicdoh20"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not all((DATA / name).is_file() for name in FILES):
        print(f"skipped: the CIC-DoH flows {FILES} are not in {DATA}")
        return

    from netassets.traffic import train
    from netassets.traffic.config import TrainConfig
    from netassets.traffic.split import assign_splits

    index, rule = assign_splits(flow_index(DATA), args.val_fraction, args.test_fraction)
    print(f"{len(index)} flows; split {rule}")
    with tempfile.TemporaryDirectory(prefix="netassets_traffic_real_") as folder:
        folder = Path(folder)
        index.write_parquet(folder / "flows.parquet")
        start = time.perf_counter()
        # the worker reads its TrainConfig from a file, as when the traffic_lstm asset launches it
        TrainConfig(seq_len=100, normalisation="standardise", hidden_size=args.hidden_size, epochs=args.epochs,
                    patience=args.patience, learning_rate=args.learning_rate, val_fraction=args.val_fraction,
                    test_fraction=args.test_fraction, seed=args.seed).write(folder / "config.json")
        train.main([f"--config={folder / 'config.json'}", f"--flows={folder / 'flows.parquet'}", f"--landing={DATA}",
                    f"--checkpoint={folder / 'checkpoint.pt'}", f"--weights={folder / 'model.safetensors'}",
                    f"--report={folder / 'report.json'}", f"--split_rule={rule}"])
        seconds = time.perf_counter() - start
        report = json.loads((folder / "report.json").read_text())

    evaluation = report["evaluation"]
    print(f"\nbest epoch {report['best_epoch']} of {len(report['history'])} (validation MSE), {seconds:.0f} s; "
          f"flows train/val/test {report['flows']}")
    print(f"{'scorer':40} {'split':>5} {'cos mean':>9} {'cos median':>11} {'MSE':>8}")
    for name, key in (("next-packet LSTM (best epoch)", "model"), ("persistence (next = current)", "persistence")):
        s = report["val"][key]
        print(f"{name:40} {'val':>5} {s['cos_mean']:>9.4f} {s['cos_median']:>11.4f} {s['mse']:>8.4f}")
    for name, s in evaluation["scores"].items():
        print(f"{name:40} {'test':>5} {s['cos_mean']:>9.4f} {s['cos_median']:>11.4f} {s['mse']:>8.4f}")
    print(f"\nverdict: {evaluation['verdict']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "data": [str(DATA / name) for name in FILES], "command": " ".join(sys.argv), "seconds": seconds,
        "split_rule": rule, "flows": report["flows"], "best_epoch": report["best_epoch"], "config": report["config"],
        "val": report["val"], "test": evaluation, "history": report["history"],
    }, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
