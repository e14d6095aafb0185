"""LENS raw -> clean groups: netassets vs a pandas port of the seed vs a bare DuckDB read.

    python -m bench.lens_clean [--hours 24] [--out bench/results/lens_clean.json]

Generates one full-rate day for one region (8.64 M rows in 24 hour files at --hours 24),
then runs each method in its own process (so peak RSS is that method's alone):
  floor     DuckDB `read_csv` count over the same files: the cost of just reading them
  netassets lens_raw_irtt + lens_clean_groups into a DuckDB file (the assets' code path)
  pandas    a straightforward port of the seed's loading, grouping and grid filling
Prints rows/s, peak RSS and the ratios; writes JSON. Targets: >= 10x pandas, within 3x of
the floor, peak RSS under 2 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = dt.date(2023, 11, 1)
REGION = "chicago"


def method_floor(root: Path) -> dict:
    import duckdb

    files = sorted(str(p) for p in (root / REGION / DAY.isoformat()).glob("irtt-*.csv"))
    start = time.perf_counter()
    rows = duckdb.connect().execute(
        "SELECT count(*) FROM read_csv($f, header=true, auto_detect=false, "
        "columns={'timestamp':'BIGINT','rtt':'DOUBLE','uplink':'DOUBLE','downlink':'DOUBLE'})",
        {"f": files},
    ).fetchone()[0]
    return {"rows": rows, "seconds": time.perf_counter() - start, "groups": None}


def method_netassets(root: Path) -> dict:
    import os

    import dagster as dg

    os.environ["NETASSETS_LENS_ROOT"] = str(root)
    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.lens.assets import lens_clean_groups, lens_raw_irtt

    warehouse = DuckDBWarehouse(database=str(root / "bench.duckdb"))
    key = f"{DAY.isoformat()}|{REGION}"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("lens_regions", [REGION])
        start = time.perf_counter()
        result = dg.materialize([lens_raw_irtt, lens_clean_groups], partition_key=key,
                                resources={"warehouse": warehouse}, instance=instance)
        seconds = time.perf_counter() - start
    metadata = {n: result.asset_materializations_for_node(n)[0].metadata for n in ("lens_raw_irtt", "lens_clean_groups")}
    return {"rows": metadata["lens_raw_irtt"]["dagster/row_count"].value, "seconds": seconds,
            "groups": metadata["lens_clean_groups"]["dagster/row_count"].value}


def method_pandas(root: Path) -> dict:
    """The seed's approach: pandas frames, a groupby, and a per-group reindex onto the grid."""
    import numpy as np
    import pandas as pd

    start = time.perf_counter()
    files = sorted((root / REGION / DAY.isoformat()).glob("irtt-*.csv"))
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    rows = len(df)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ns").dt.round("10ms")
    df.loc[df["rtt"] <= 0, "rtt"] = np.nan
    df = df.drop_duplicates(subset="timestamp", keep="first").sort_values("timestamp")
    first = df["timestamp"].iloc[0]
    start_ts = first.ceil("1s")
    while start_ts.second % 15 != 12:
        start_ts += pd.Timedelta(seconds=1)
    df = df[df["timestamp"] >= start_ts]
    df["group"] = ((df["timestamp"] - start_ts) // pd.Timedelta(seconds=15)).astype(int)
    df = df[df["group"] < df["group"].max()]
    counts = df.groupby("group")["rtt"].count()
    keep = counts[counts > 1300].index
    groups = []
    for gid, group in df[df["group"].isin(keep)].groupby("group"):
        grid = pd.date_range(start_ts + pd.Timedelta(seconds=15 * gid), periods=1500, freq="10ms")
        series = group.set_index("timestamp")["rtt"].reindex(grid)
        token = series.fillna(-1.0).to_numpy()
        observed = series.dropna()
        positions = np.searchsorted(grid.values, observed.index.values)
        slots = np.arange(1500)
        right = np.clip(np.searchsorted(positions, slots), 0, len(positions) - 1)
        left = np.clip(right - 1, 0, len(positions) - 1)
        use_left = np.abs(slots - positions[left]) <= np.abs(positions[right] - slots)
        nearest = np.where(use_left, observed.to_numpy()[left], observed.to_numpy()[right])
        groups.append((gid, token, nearest))
    return {"rows": rows, "seconds": time.perf_counter() - start, "groups": len(groups)}


METHODS = {"floor": method_floor, "netassets": method_netassets, "pandas": method_pandas}


def run_child(method: str, root: Path) -> dict:
    result = METHODS[method](root)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("bench/results/lens_clean.json"))
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.root)))
        return

    from netassets.lens.sample import write_lens

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_lens(root, [REGION], DAY, days=1, seed=0, hours=args.hours)
        print(f"generated {args.hours} hour file(s) in {time.perf_counter() - t0:.1f}s", flush=True)
        results = {}
        for method in ("floor", "netassets", "pandas"):
            out = subprocess.run([sys.executable, "-m", "bench.lens_clean", "--child", method, "--root", str(root)],
                                 check=True, capture_output=True, text=True)
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {method}: {results[method]['seconds']:.1f}s", flush=True)

    for r in results.values():
        r["rows_per_s"] = r["rows"] / r["seconds"]
    speedup_vs_pandas = results["pandas"]["seconds"] / results["netassets"]["seconds"]
    slowdown_vs_floor = results["netassets"]["seconds"] / results["floor"]["seconds"]
    print(f"\nLENS raw -> clean groups, {results['floor']['rows']:,} rows ({args.hours} h, 1 region)")
    print(f"{'method':<10} {'seconds':>8} {'rows/s':>12} {'peak RSS MB':>12} {'groups':>7}")
    for name, r in results.items():
        print(f"{name:<10} {r['seconds']:>8.2f} {r['rows_per_s']:>12,.0f} {r['peak_rss_mb']:>12.0f} {str(r['groups'] or '-'):>7}")
    print(f"\nnetassets vs pandas: {speedup_vs_pandas:.1f}x faster (target >= 10x)")
    print(f"netassets vs floor:  {slowdown_vs_floor:.2f}x the bare read (target <= 3x)")
    print(f"netassets peak RSS:  {results['netassets']['peak_rss_mb']:.0f} MB (target < 2048)")
    if results["netassets"]["groups"] != results["pandas"]["groups"]:
        print(f"note: group counts differ: netassets {results['netassets']['groups']} vs pandas {results['pandas']['groups']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"hours": args.hours, "results": results, "speedup_vs_pandas": speedup_vs_pandas,
                                    "ratio_to_floor": slowdown_vs_floor}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
