"""Streaming flow reader vs reading the whole file, on a generated seed-format file of >= 1 GB.

    python -m bench.traffic_stream [--gb 1.0] [--features 146]

Both readers parse and validate every flow with the same code (``readers.packets_from_rows``):
- stream: ``readers.index_files`` as ``traffic_flows`` runs it (mmap, line byte offsets,
  one flow in memory at a time, scanned pages released);
- whole:  ``Path.read_bytes()``, split into lines, every flow parsed and kept (the dataset
  loaded whole, as without the seed's mmap generator).
Each reader runs in its own process so its peak RSS is its own. The file is written under
/tmp and deleted afterwards. Prints a table; writes bench/results/traffic_stream.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "traffic_stream.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def read_streaming(path: Path) -> tuple[int, int]:
    from netassets.traffic.readers import index_files

    frame = index_files([path], path.parent).frame
    return len(frame), int(frame["n_packets"].sum())


def read_whole(path: Path) -> tuple[int, int]:
    from netassets.traffic.readers import packets_from_rows

    lines = path.read_bytes().split(b"\n")
    flows = [packets_from_rows(json.loads(b"[" + line + b"]")) for line in lines if line]
    return len(flows), sum(len(f) for f in flows)


READERS = {"stream (mmap offsets)": read_streaming, "whole (read_bytes + json)": read_whole}


def worker(reader: str, path: Path) -> None:
    import polars  # noqa: F401  (imported by both readers: count it in the baseline, not the reading)

    import netassets.traffic.readers  # noqa: F401

    before = _rss_mb()
    start = time.perf_counter()
    flows, packets = READERS[reader](path)
    seconds = time.perf_counter() - start
    print(json.dumps({"flows": flows, "packets": packets, "seconds": seconds,
                      "rss_before_mb": before, "peak_rss_mb": _rss_mb()}))


def write_file(path: Path, gigabytes: float, n_features: int, seed: int = 0) -> int:
    """Cycle through a pool of generated flows until the file reaches the size asked for."""
    from netassets.traffic.sample import flow_line, protocol_templates, synthetic_flows

    rng = np.random.default_rng(seed)
    pool = [(flow_line(f) + "\n").encode()
            for f in synthetic_flows(rng, 400, protocol_templates(rng, n_features), max_packets=100)]
    target, written = int(gigabytes * 2**30), 0
    with open(path, "wb") as out:
        while written < target:
            for line in pool:
                written += out.write(line)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--features", type=int, default=146)
    parser.add_argument("--worker", choices=list(READERS), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.path)

    folder = Path(tempfile.mkdtemp(prefix="netassets_traffic_bench_"))
    try:
        path = folder / "features_tls_bench.csv"
        start = time.perf_counter()
        size = write_file(path, args.gb, args.features)
        print(f"generated {size / 2**30:.2f} GiB in {time.perf_counter() - start:.0f} s: {path}")
        rows = []
        for reader in READERS:
            done = subprocess.run([sys.executable, "-m", "bench.traffic_stream", "--worker", reader, "--path", str(path)],
                                  check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"reader": reader, **result, "flows_per_s": result["flows"] / result["seconds"],
                         "mb_per_s": size / 2**20 / result["seconds"]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    stream, whole = rows
    if (stream["flows"], stream["packets"]) != (whole["flows"], whole["packets"]):
        raise SystemExit(f"readers disagree: {stream} vs {whole}")
    print(f"\n{'reader':28} {'flows':>8} {'packets':>10} {'s':>7} {'flows/s':>9} {'MB/s':>7} {'RSS before MB':>14} {'peak RSS MB':>12}")
    for r in rows:
        print(f"{r['reader']:28} {r['flows']:>8} {r['packets']:>10} {r['seconds']:>7.1f} {r['flows_per_s']:>9.0f} "
              f"{r['mb_per_s']:>7.1f} {r['rss_before_mb']:>14.0f} {r['peak_rss_mb']:>12.0f}")
    ratios = {"throughput_stream_over_whole": stream["flows_per_s"] / whole["flows_per_s"],
              "peak_rss_stream_over_whole": stream["peak_rss_mb"] / whole["peak_rss_mb"],
              "rss_growth_stream_over_whole": (stream["peak_rss_mb"] - stream["rss_before_mb"])
              / (whole["peak_rss_mb"] - whole["rss_before_mb"])}
    print("\n" + "\n".join(f"{k}: {v:.3f}" for k, v in ratios.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"file_bytes": size, "features": args.features, "readers": rows, "ratios": ratios}, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
