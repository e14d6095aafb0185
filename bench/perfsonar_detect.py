"""perfSONAR detector benchmark: batched detector vs a direct port of the seed's per-hour loop.

    python -m bench.perfsonar_detect [--days 3] [--destinations 20] [--seed-hours 6]

Data: the simulator (known anomalous hours on every day but the first), turned into the
minute x destination matrix by the pipeline's own SQL model. Every hour of days 2.. is scored
by the batched detector and by the per-destination z-score baseline; the seed port (one Keras-
style model per hour: RMSprop, batch 10, 100 epochs, raw inputs) runs on ``--seed-hours`` of
those hours (half anomalous), where all three are compared on the same hours. Precision and
recall are per hour. Where ../shared/data/perfsonar is present, the real esmond path is scored
too (no labels: alarm counts only). Writes bench/results/perfsonar_detect.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import torch
from sklearn.model_selection import train_test_split

from netassets.core.settings import SHARED_DATA_DIR
from netassets.core.sql import load_sql
from netassets.perfsonar.documents import FieldMapping, parse_hits
from netassets.perfsonar.model import (DetectorSettings, HourScore, day_hours, loss_matrix, score_hours,
                                       scaled_accuracy, windows)
from netassets.perfsonar.sample import real_documents, simulate

RESULTS = Path(__file__).parent / "results" / "perfsonar_detect.json"


def matrix_from_documents(documents: list[dict]) -> pd.DataFrame:
    """Documents -> the loader's parse (skips) -> the loader's SQL model -> the detector's matrix."""
    parsed = parse_hits(({"_source": d, "_id": d["_id"]} for d in sorted(documents, key=lambda d: (d["timestamp"], d["_id"]))),
                        FieldMapping())
    m = parsed.measurements
    pulled = pl.DataFrame({"seq": range(len(m)), "timestamp_ms": [x.timestamp_ms for x in m],
                           "destination": [x.destination for x in m], "source_site": [x.source_site for x in m],
                           "destination_site": [x.destination_site for x in m],
                           "packet_loss": [x.packet_loss for x in m]})
    with duckdb.connect() as conn:
        conn.register("perfsonar_pulled", pulled.to_arrow())
        long = conn.execute(load_sql("perfsonar", "perfsonar_packet_loss"), {"day": dt.date(2000, 1, 1), "source": "x"}).df()
    return loss_matrix(long)


def seed_port_score(reference: np.ndarray, subject: np.ndarray) -> float:
    """The seed's ANN.check_for_anomaly, ported from Keras to torch line by line."""
    n = reference.shape[1]
    x_ref_train, x_ref_test = train_test_split(reference, test_size=0.3, random_state=42)
    x_sub_train, x_sub_test = train_test_split(subject, test_size=0.3, random_state=42)
    x_train = np.vstack([x_ref_train, x_sub_train]).astype(np.float32)
    y_train = np.r_[np.zeros(len(x_ref_train)), np.ones(len(x_sub_train))].astype(np.float32)
    x_test = torch.from_numpy(np.vstack([x_ref_test, x_sub_test]).astype(np.float32))
    y_test = torch.from_numpy(np.r_[np.zeros(len(x_ref_test)), np.ones(len(x_sub_test))].astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(n, 2 * n), torch.nn.ReLU(), torch.nn.Linear(2 * n, n), torch.nn.ReLU(),
                              torch.nn.Linear(n, 1), torch.nn.Sigmoid())
    for layer in net:
        if isinstance(layer, torch.nn.Linear):  # Keras Dense defaults
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    optimiser = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)  # Keras 'rmsprop'
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(100):  # epochs=100, batch_size=10, shuffle=True
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 10):
            idx = order[start : start + 10]
            optimiser.zero_grad()
            torch.nn.functional.binary_cross_entropy(net(xt[idx]).squeeze(-1), yt[idx]).backward()
            optimiser.step()
    with torch.no_grad():
        accuracy = float(((net(x_test).squeeze(-1) > 0.5).float() == y_test).float().mean())
    return scaled_accuracy(accuracy, len(reference), len(subject))[0]


def precision_recall(flagged: dict[pd.Timestamp, bool], truth: set[pd.Timestamp]) -> dict[str, float]:
    tp = sum(f and h in truth for h, f in flagged.items())
    fp = sum(f and h not in truth for h, f in flagged.items())
    fn = sum(not f and h in truth for h, f in flagged.items())
    return {"precision": tp / (tp + fp) if tp + fp else float("nan"), "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "tp": tp, "fp": fp, "fn": fn, "n": len(flagged)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--destinations", type=int, default=20)
    parser.add_argument("--anomalies-per-day", type=int, default=4)
    parser.add_argument("--seed-hours", type=int, default=6, help="hours the slow seed port analyses")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both detectors")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    settings = DetectorSettings(seed=args.seed)

    start = dt.date(2024, 3, 1)
    sim = simulate(start, args.days, destinations=args.destinations, anomalies_per_day=args.anomalies_per_day,
                   seed=args.seed)
    matrix = matrix_from_documents(sim.documents)
    truth = {pd.Timestamp(a["hour"]) for a in sim.anomalous_hours}
    days = [start + dt.timedelta(days=d) for d in range(1, args.days)]

    began = time.perf_counter()
    batched: list[HourScore] = [s for day in days for s in score_hours(matrix, day_hours(day), settings)]
    batched_seconds = time.perf_counter() - began
    hours = [s.hour for s in batched if s.status == "scored"]

    rng = np.random.default_rng(args.seed)
    anomalous, quiet = sorted(truth & set(hours)), sorted(set(hours) - truth)
    k = args.seed_hours // 2
    subset = sorted(list(rng.choice(anomalous, min(k, len(anomalous)), replace=False))
                    + list(rng.choice(quiet, args.seed_hours - min(k, len(anomalous)), replace=False)))
    began = time.perf_counter()
    seed_flags = {w.hour: seed_port_score(w.reference, w.subject) > settings.cut
                  for w in windows(matrix, subset, settings.reference_hours)}
    seed_seconds = time.perf_counter() - began

    by_hour = {s.hour: s for s in batched}
    rows = [
        {"method": "batched detector", "on": "all hours", **precision_recall({h: by_hour[h].flagged for h in hours}, truth),
         "hours_per_s": len(hours) / batched_seconds},
        {"method": "z-score baseline", "on": "all hours", **precision_recall({h: by_hour[h].baseline_flagged for h in hours}, truth)},
        {"method": "batched detector", "on": "seed subset", **precision_recall({h: by_hour[h].flagged for h in subset}, truth)},
        {"method": "seed port (1 model/hour)", "on": "seed subset", **precision_recall(seed_flags, truth),
         "hours_per_s": len(subset) / seed_seconds},
        {"method": "z-score baseline", "on": "seed subset", **precision_recall({h: by_hour[h].baseline_flagged for h in subset}, truth)},
    ]
    speedup = (len(hours) / batched_seconds) / (len(subset) / seed_seconds)

    real = None
    if (SHARED_DATA_DIR / "perfsonar").is_dir():
        real_day = dt.date(2024, 4, 1)
        real_matrix = matrix_from_documents(real_documents(real_day))
        # Half of the real minutes have lost > sent and are skipped, so an hour's reference holds
        # ~30 minutes an hour: accept references from 10 such hours on.
        relaxed = DetectorSettings(seed=args.seed, min_reference_rows=300, min_subject_rows=20)
        real_scores = [s for s in score_hours(real_matrix, day_hours(real_day), relaxed) if s.status == "scored"]
        real = {"hours_scored": len(real_scores), "detector_alarms": sum(s.flagged for s in real_scores),
                "baseline_alarms": sum(s.baseline_flagged for s in real_scores),
                "max_score": max(s.score for s in real_scores)}
    else:
        print(f"real esmond data not found under {SHARED_DATA_DIR}: skipping the real-data section")

    print(f"{'method':<26} {'on':<12} {'n':>3} {'prec':>6} {'recall':>6} {'tp':>3} {'fp':>3} {'fn':>3} {'hours/s':>9}")
    for r in rows:
        rate = f"{r['hours_per_s']:9.2f}" if "hours_per_s" in r else ""
        print(f"{r['method']:<26} {r['on']:<12} {r['n']:>3} {r['precision']:6.2f} {r['recall']:6.2f} "
              f"{r['tp']:3d} {r['fp']:3d} {r['fn']:3d} {rate}")
    print(f"speed-up of the batched detector over the seed port: {speedup:.0f}x "
          f"({batched_seconds / len(hours) * 1000:.0f} ms vs {seed_seconds / len(subset) * 1000:.0f} ms an hour)")
    if real:
        print(f"real esmond path: {real['hours_scored']} hours scored, detector alarms {real['detector_alarms']}, "
              f"z-score alarms {real['baseline_alarms']} (no labels)")
    report = {"config": vars(args), "rows": rows, "speedup": speedup, "real_esmond": real,
              "anomalous_hours": sorted(str(h) for h in truth)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for row in rows:  # strict JSON has no NaN (precision of a method that flagged nothing)
        row.update({k: None for k, v in row.items() if isinstance(v, float) and math.isnan(v)})
    RESULTS.write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
