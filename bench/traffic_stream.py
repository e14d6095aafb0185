"""Flows parsed once: the old (stdlib json) reader vs the new (simdjson) one writing the packet
cache, and a training epoch's data pass over the cache vs re-parsing the text, on one
generated seed-format file, all in the same run.

    python -m bench.traffic_stream [--gb 0.25] [--features 146] [--with-whole]
    python -m bench.traffic_stream --gb 1.0          # the 1 GB figures

Steps, each in its own process so its peak RSS is its own:
- old parser:  ``readers.index_files`` (mmap, line byte offsets, one flow at a time) with the
  previous per-flow parser, stdlib ``json`` (``readers._parse_csv_line_stdlib``): the reference;
- new parser: the same scan with simdjson per flow, straight into doubles (stdlib only for a
  flow simdjson refuses);
- new parser + cache: ``readers.index_files(..., cache=...)`` as ``traffic_flows`` runs it,
  also writing (and fsyncing) the binary packet cache;
- epoch, re-parse text: every indexed flow read once in a shuffled order through the old
  training path (``train.Flows``, mmap + offset, stdlib parser), as each epoch did before;
- epoch, cache: the same flows in the same order from the cache (``cache.CachedFlows``, mmap).
- ``--with-whole``: also ``Path.read_bytes()`` + json of the whole file (the dataset loaded whole).
An epoch here is its data pass (every training flow read once); the model's own compute is
the same either way and is left out. Both epochs checksum what they read: they must agree.
The file and cache are written under /tmp and deleted afterwards. Prints a table; writes
bench/results/traffic_stream.json.
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


def old_parser(path: Path, work: Path) -> dict:
    from netassets.traffic import readers

    readers._parse_csv_line = readers._parse_csv_line_stdlib  # today's reader: the same scan, stdlib json
    frame = readers.index_files([path], path.parent).frame
    return {"flows": len(frame), "packets": int(frame["n_packets"].sum())}


def new_parser(path: Path, work: Path) -> dict:
    from netassets.traffic.readers import index_files

    frame = index_files([path], path.parent).frame
    return {"flows": len(frame), "packets": int(frame["n_packets"].sum())}


def new_parser_cache(path: Path, work: Path) -> dict:
    from netassets.traffic.readers import index_files

    frame = index_files([path], path.parent, cache=work / "cache").frame
    frame.write_parquet(work / "index.parquet")
    return {"flows": len(frame), "packets": int(frame["n_packets"].sum())}


def _epoch(flows, n: int) -> dict:
    order = np.random.default_rng(0).permutation(n)
    packets, checksum = 0, 0.0
    for i in order:
        rows = flows[int(i)]
        packets += len(rows)
        checksum += float(rows[0].sum())  # touch what was read
    return {"flows": n, "packets": packets, "checksum": checksum}


def epoch_reparse(path: Path, work: Path) -> dict:
    import polars as pl

    from netassets.traffic import readers, train

    readers._parse_csv_line = readers._parse_csv_line_stdlib  # the training path before the cache
    index = pl.read_parquet(work / "index.parquet")
    with train.Flows(index, path.parent) as flows:
        return _epoch(flows, len(index))


def epoch_cache(path: Path, work: Path) -> dict:
    import polars as pl

    from netassets.traffic.cache import CachedFlows

    index = pl.read_parquet(work / "index.parquet")
    with CachedFlows(index, path.parent, work / "cache") as flows:
        if flows.rebuilt:
            raise SystemExit("the cache was not there: the epoch would have parsed text")
        return _epoch(flows, len(index))


def whole(path: Path, work: Path) -> dict:
    from netassets.traffic.readers import packets_from_rows

    lines = path.read_bytes().split(b"\n")
    flows = [packets_from_rows(json.loads(b"[" + line + b"]")) for line in lines if line]
    return {"flows": len(flows), "packets": sum(len(f) for f in flows)}


STEPS = {"old parser (stdlib json)": old_parser, "new parser (simdjson)": new_parser,
         "new parser (simdjson) + cache": new_parser_cache,
         "epoch: re-parse text (old)": epoch_reparse, "epoch: cache (mmap)": epoch_cache,
         "whole (read_bytes + json)": whole}


def worker(step: str, path: Path, work: Path) -> None:
    import polars  # noqa: F401  (imported by every step: count it in the baseline, not the reading)

    import netassets.traffic.cache  # noqa: F401
    import netassets.traffic.readers  # noqa: F401

    if step == "epoch: re-parse text (old)":
        import netassets.traffic.train  # noqa: F401  (torch: in its baseline, not its reading)

    before = _rss_mb()
    start = time.perf_counter()
    result = STEPS[step](path, work)
    seconds = time.perf_counter() - start
    print(json.dumps({**result, "seconds": seconds, "rss_before_mb": before, "peak_rss_mb": _rss_mb()}))


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
    parser.add_argument("--gb", type=float, default=0.25, help="size of the generated file (1.0 for the 1 GB figures)")
    parser.add_argument("--features", type=int, default=146)
    parser.add_argument("--with-whole", action="store_true", help="also load the whole file at once (RSS ~2x the file)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=list(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.path, args.work)

    steps = [s for s in STEPS if args.with_whole or not s.startswith("whole")]
    folder = Path(tempfile.mkdtemp(prefix="netassets_traffic_bench_"))
    try:
        path = folder / "features_tls_bench.csv"
        start = time.perf_counter()
        size = write_file(path, args.gb, args.features)
        print(f"generated {size / 2**30:.2f} GiB in {time.perf_counter() - start:.0f} s: {path}")
        rows = {}
        for step in steps:
            done = subprocess.run([sys.executable, "-m", "bench.traffic_stream", "--worker", step, "--path", str(path),
                                   "--work", str(folder)], check=True, capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows[step] = {"step": step, **result, "flows_per_s": result["flows"] / result["seconds"],
                          "text_mb_per_s": size / 2**20 / result["seconds"]}
            print(f"  {step}: {result['seconds']:.1f} s", flush=True)
        cache_bytes = sum(p.stat().st_size for p in (folder / "cache").rglob("*.packets"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    counts = {(r["flows"], r["packets"]) for r in rows.values()}
    if len(counts) != 1:
        raise SystemExit(f"steps disagree on flows/packets: {rows}")
    old, new, new_cache = rows["old parser (stdlib json)"], rows["new parser (simdjson)"], rows["new parser (simdjson) + cache"]
    reparse, cached = rows["epoch: re-parse text (old)"], rows["epoch: cache (mmap)"]
    if reparse["checksum"] != cached["checksum"]:
        raise SystemExit(f"the cache epoch read other values than the text: {reparse['checksum']} vs {cached['checksum']}")
    print(f"\ntext file {size / 2**20:.0f} MiB, {old['flows']} flows, {old['packets']} packets x {args.features} "
          f"features; packet cache {cache_bytes / 2**20:.0f} MiB")
    print(f"{'step':30} {'s':>7} {'flows/s':>9} {'text MB/s':>10} {'RSS before MB':>14} {'peak RSS MB':>12}")
    for r in rows.values():
        print(f"{r['step']:30} {r['seconds']:>7.1f} {r['flows_per_s']:>9.0f} {r['text_mb_per_s']:>10.1f} "
              f"{r['rss_before_mb']:>14.0f} {r['peak_rss_mb']:>12.0f}")
    ratios = {"parse_new_over_old": new["text_mb_per_s"] / old["text_mb_per_s"],
              "parse_and_cache_new_over_old": new_cache["text_mb_per_s"] / old["text_mb_per_s"],
              "epoch_cache_over_reparse": reparse["seconds"] / cached["seconds"],
              "peak_rss_mb_new_steps_max": max(new["peak_rss_mb"], new_cache["peak_rss_mb"], cached["peak_rss_mb"])}
    targets = {"parse_new_over_old": (">=", 3.0), "epoch_cache_over_reparse": (">=", 30.0),
               "peak_rss_mb_new_steps_max": ("<=", 256.0)}
    met = {k: (ratios[k] >= v) if op == ">=" else (ratios[k] <= v) for k, (op, v) in targets.items()}
    print("\n" + "\n".join(f"{k}: {v:.2f}" + (f" (target {targets[k][0]} {targets[k][1]:g}: "
                                                  f"{'met' if met[k] else 'MISSED'})" if k in targets else "")
                           for k, v in ratios.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"file_bytes": size, "cache_bytes": cache_bytes, "features": args.features,
                                    "steps": list(rows.values()), "ratios": ratios, "targets_met": met}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
