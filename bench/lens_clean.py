"""LENS raw -> clean groups with every check, as `dagster asset materialize` runs them, next to
the read floors and the pandas port; and the clean groups' storage layouts, written and read.

    python -m bench.lens_clean [--hours 24] [--repeat 3] [--out bench/results/lens_clean.json]

Generates one full-rate day for one region (8.64 M rows in 24 hour files at --hours 24), then
runs each method --repeat times, interleaved, each run in its own process (so peak RSS is that
method's alone), and reports the median:
  floor      DuckDB `read_csv` count(*) over the same files: reads them, parses no column
  parse      polars `read_csv` of the four columns into memory: a real parse, nothing else
  netassets  dg.materialize of lens_ingest: lens_raw_irtt + lens_clean_groups into a fresh DuckDB
             file, with both GX suites evaluated in the step (the in-process executor, as the
             CLI runs it), on a fresh instance with deploy/dagster.yaml's compute-log manager (as
             `netassets demo` and a DAGSTER_HOME set up from that file run). The process has
             imported the code location before the clock starts, as a run worker has; Great
             Expectations is imported inside the clock, by the step's check worker thread while
             the step reads and cleans
  warm       the same, in a process prepared as the warm launcher prepares the process it forks
             run workers from (``run_launcher.prepare_warm_process``): GX imported and warmed up
             by one validation, Dagster's run path imported, its two in-process fixes applied
  dagster    the same dg.materialize of a step with lens_ingest's assets and checks that does no
             work (it yields the two materialisations and two passed checks): what Dagster's own
             run bookkeeping costs, the part of the netassets figures that no ingest code can remove
  gx         what a cold run does that a warm one does not: Great Expectations imported, its
             context made and one suite of every kind validated (``expectations.warm_up``, as the
             warm process does), in a process that has loaded the code location and opened an
             instance, as the runs' processes have
  pandas     a straightforward port of the seed's loading, grouping and grid filling
For the Dagster runs, "step" is the step's own duration as Dagster records it (STEP_SUCCESS).
Each method also reports the CPU seconds its process spent inside the clock (every thread). A
cold run does what a warm run does and what ``gx`` does, so on this machine's cores it cannot take
less than max(warm's seconds, (warm's CPU + gx's CPU) / cores): the bench prints that bound.
Every process imports what it needs before its clock starts (DuckDB's first parameterised query
imports pandas, which the floor does before timing too).

Layouts (one process, the day's clean groups as lens_ingest builds them): each candidate storage
for lens_clean_groups is written (a partition replace, committed and checkpointed) and read back
the way the downstream steps read it (lens_group_features: the nearest fill of one partition as a
(groups, 1500) float64 matrix), median of --repeat.
Prints a table and the ratios; writes JSON. Targets: netassets <= 4x the count(*) floor, >= 5x
faster than pandas, peak RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = dt.date(2023, 11, 1)
REGION = "chicago"
CSV_COLUMNS = "{'timestamp':'BIGINT','rtt':'DOUBLE','uplink':'DOUBLE','downlink':'DOUBLE'}"


class Clock:
    """Wall seconds and the process's CPU seconds (every thread) since it was made."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict:
        return {"seconds": time.perf_counter() - self.wall, "cpu_s": time.process_time() - self.cpu}


def _hour_files(root: Path) -> list[str]:
    return sorted(str(p) for p in (root / REGION / DAY.isoformat()).glob("irtt-*.csv"))


def method_floor(root: Path) -> dict:
    import duckdb

    conn = duckdb.connect()
    conn.execute("SELECT ?", [1])  # DuckDB imports pandas on the first parameterised query
    clock = Clock()
    rows = conn.execute(
        f"SELECT count(*) FROM read_csv($f, header=true, auto_detect=false, columns={CSV_COLUMNS})",
        {"f": _hour_files(root)},
    ).fetchone()[0]
    return {"rows": rows, **clock.read(), "groups": None}


def method_parse(root: Path) -> dict:
    import polars as pl

    from netassets.lens.ingest import SCHEMA

    clock = Clock()
    rows = pl.read_csv(_hour_files(root), schema=SCHEMA, has_header=True)
    return {"rows": rows.height, **clock.read(), "groups": None}


def method_warm(root: Path) -> dict:
    from netassets.core.run_launcher import DEFAULT_PRELOAD, prepare_warm_process

    prepare_warm_process(DEFAULT_PRELOAD)  # what the warm launcher's process does before it forks a run's worker
    return method_netassets(root)


def _materialize(root: Path, step) -> tuple[dict, float, "dg.ExecuteInProcessResult"]:
    """dg.materialize of ``step`` (a definition of lens_ingest's shape) for the day, into a fresh
    DuckDB file and a fresh instance: (the run's seconds and CPU seconds, the step's own
    seconds, the result)."""
    import os

    import dagster as dg

    os.environ["NETASSETS_LENS_ROOT"] = str(root)
    import netassets.definitions  # noqa: F401  (what a run worker has loaded before a step starts)
    from netassets.core.settings import instance_setting
    from netassets.core.warehouse import DuckDBWarehouse
    from netassets.pipelines import pipeline

    database = root / "bench.duckdb"
    database.unlink(missing_ok=True)
    warehouse = DuckDBWarehouse(database=str(database))
    with dg.instance_for_test(overrides={"compute_logs": instance_setting("compute_logs")}) as instance:
        pipeline("lens").register(instance, [REGION])
        clock = Clock()
        result = dg.materialize([step], partition_key=f"{DAY.isoformat()}|{REGION}",
                                resources={"warehouse": warehouse}, instance=instance)
        timing = clock.read()
    database.unlink(missing_ok=True)
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 and all(c.passed for c in checks), checks
    (step_done,) = [e for e in result.all_events if e.event_type_value == "STEP_SUCCESS"]
    return timing, step_done.event_specific_data.duration_ms / 1000, result


def method_netassets(root: Path) -> dict:
    from netassets.defs.lens.assets import lens_ingest

    timing, step_seconds, result = _materialize(root, lens_ingest)
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    return {"rows": metadata["lens_raw_irtt"]["dagster/row_count"].value, **timing, "step_seconds": step_seconds,
            "groups": metadata["lens_clean_groups"]["dagster/row_count"].value,
            "checks": len(result.get_asset_check_evaluations()),
            "reader": metadata["lens_raw_irtt"]["reader"].value}


def method_dagster(root: Path) -> dict:
    import dagster as dg

    from netassets.defs.lens.assets import LENS_CLEAN_GX, LENS_RAW_GX, lens_ingest

    @dg.multi_asset(name="lens_ingest", specs=list(lens_ingest.specs), check_specs=[LENS_RAW_GX, LENS_CLEAN_GX],
                    partitions_def=lens_ingest.partitions_def, pool=lens_ingest.op.pool)
    def no_work(context):  # noqa: ARG001  (unannotated: this module's annotations are strings)
        for spec in lens_ingest.specs:
            yield dg.MaterializeResult(asset_key=spec.key)
        for check in (LENS_RAW_GX, LENS_CLEAN_GX):
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    timing, step_seconds, _ = _materialize(root, no_work)
    return {"rows": None, **timing, "step_seconds": step_seconds, "groups": None}


def method_gx(root: Path) -> dict:  # noqa: ARG001  (reads no file)
    import dagster as dg

    import netassets.definitions  # noqa: F401
    from netassets.core.expectations import warm_up
    from netassets.core.settings import instance_setting

    with dg.instance_for_test(overrides={"compute_logs": instance_setting("compute_logs")}):
        clock = Clock()
        warm_up()
        return {"rows": None, **clock.read(), "groups": None}


def method_pandas(root: Path) -> dict:
    """The seed's approach: pandas frames, a groupby, and a per-group reindex onto the grid."""
    import numpy as np
    import pandas as pd

    clock = Clock()
    files = sorted((root / REGION / DAY.isoformat()).glob("irtt-*.csv"))
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    rows = len(df)
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="ns").dt.round("10ms")
    df = df[df["rtt"] > 0]  # the seed drops lost rows before anything else
    df = df.drop_duplicates(subset="timestamp", keep="first").sort_values("timestamp")
    start_ts = df.loc[df["timestamp"].dt.second.isin([12, 27, 42, 57]), "timestamp"].min()
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
    return {"rows": rows, **clock.read(), "groups": len(groups)}


METHODS = {"floor": method_floor, "parse": method_parse, "netassets": method_netassets, "warm": method_warm,
           "dagster": method_dagster, "gx": method_gx, "pandas": method_pandas}


def layouts(root: Path, repeat: int) -> dict:
    """Write and read the day's clean groups in each candidate layout of lens_clean_groups."""
    import duckdb
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from netassets.core.partitions import DayPartition
    from netassets.core.warehouse import WIDE_ROW_GROUP_SIZE, DuckDBWarehouse, in_row_groups
    from netassets.lens.cleaning import GROUP_POINTS, observed_mask, token_fill
    from netassets.lens.features import series_matrix
    from netassets.lens.ingest import SCHEMA, clean_partition

    rows = pl.read_csv(_hour_files(root), schema=SCHEMA).filter(pl.col("rtt") > 0)
    _, table = clean_partition(DayPartition(DAY, REGION), rows["timestamp"].to_numpy(), rows["rtt"].to_numpy(), 1300)
    where = {"day": DAY, "region": REGION}

    def as_arrays(t: pa.Table) -> pa.Table:
        column = t["rtt_nearest"].combine_chunks()
        return t.set_column(t.schema.get_field_index("rtt_nearest"), "rtt_nearest",
                            pa.FixedSizeListArray.from_arrays(column.values, GROUP_POINTS))

    def both_fills(t: pa.Table) -> pa.Table:
        """The layout before the bitmap: the token fill as a second list of doubles."""
        nearest = series_matrix(pl.from_arrow(t["rtt_nearest"]))
        token = token_fill(nearest, observed_mask(t["rtt_observed"].to_pylist()))
        offsets = pa.array(np.arange(0, (len(token) + 1) * GROUP_POINTS, GROUP_POINTS, dtype=np.int32))
        return t.drop_columns(["rtt_observed"]).add_column(
            t.schema.get_field_index("rtt_nearest"), "rtt_token", pa.ListArray.from_arrays(offsets, pa.array(token.ravel())))

    def duckdb_layout(fixed: bool, row_groups: bool = True, token_list: bool = False):
        def write(path: Path) -> None:
            warehouse = DuckDBWarehouse(database=str(path))
            rows = as_arrays(table) if fixed else both_fills(table) if token_list else table
            with warehouse.transaction(WIDE_ROW_GROUP_SIZE if row_groups else None) as conn:
                warehouse.replace_partition("lens_clean_groups", where, data=in_row_groups(rows) if row_groups else rows,
                                            conn=conn)
            with duckdb.connect(str(path)) as conn:
                conn.execute("CHECKPOINT")

        def read(path: Path) -> np.ndarray:
            groups = DuckDBWarehouse(database=str(path)).read_partition("lens_clean_groups", where,
                                                                         columns="rtt_nearest", order_by="group_id")
            return series_matrix(groups["rtt_nearest"])
        return write, read

    def parquet_layout(compression: str):
        def write(path: Path) -> None:
            pq.write_table(table, path, compression=compression)

        def read(path: Path) -> np.ndarray:
            return series_matrix(pl.read_parquet(path, columns=["rtt_nearest"])["rtt_nearest"])
        return write, read

    candidates = {"duckdb LIST + bitmap (chosen)": (duckdb_layout(False), "duckdb"),
                  "duckdb LIST, both fills as lists": (duckdb_layout(False, token_list=True), "duckdb"),
                  "duckdb LIST, one batch, default row groups": (duckdb_layout(False, row_groups=False), "duckdb"),
                  "duckdb DOUBLE[1500]": (duckdb_layout(True), "duckdb"),
                  "parquet snappy": (parquet_layout("snappy"), "parquet"),
                  "parquet zstd": (parquet_layout("zstd"), "parquet"),
                  "parquet none": (parquet_layout("none"), "parquet")}
    reference = series_matrix(pl.from_arrow(table["rtt_nearest"]))
    results = {}
    for name, ((write, read), suffix) in candidates.items():
        write_s, read_s, size = [], [], 0
        for attempt in range(repeat):
            path = root / f"layout-{attempt}.{suffix}"
            start = time.perf_counter()
            write(path)
            write_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            matrix = read(path)
            read_s.append(time.perf_counter() - start)
            assert np.array_equal(matrix, reference), name
            size = path.stat().st_size
            path.unlink()
        results[name] = {"write_s": sorted(write_s)[(repeat - 1) // 2], "read_s": sorted(read_s)[(repeat - 1) // 2],
                         "mb": size / 2**20}
    return {"groups": table.num_rows, "results": results}


def run_child(method: str, root: Path) -> dict:
    result = METHODS[method](root)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, 100), metavar="N",
                        help="runs per method; the median is reported")
    parser.add_argument("--out", type=Path, default=Path("bench/results/lens_clean.json"))
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.root)))
        return

    runs: dict[str, list[dict]] = {method: [] for method in METHODS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        # In a process of its own: Linux keeps a process's peak RSS across exec, so a parent that had
        # generated 8.64 M rows would hand its peak to every method's child.
        subprocess.run([sys.executable, "-m", "netassets.cli", "generate", "lens", "--out", str(root), "--regions", REGION,
                        "--start", DAY.isoformat(), "--days", "1", "--seed", "0", "--hours", str(args.hours)],
                       check=True, capture_output=True)
        print(f"generated {args.hours} hour file(s) in {time.perf_counter() - t0:.1f}s", flush=True)
        for attempt in range(args.repeat):  # methods interleaved, so a noisy spell hits them all
            for method in METHODS:
                out = subprocess.run([sys.executable, "-m", "bench.lens_clean", "--child", method, "--root", str(root)],
                                     check=True, capture_output=True, text=True)
                runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  run {attempt + 1} {method}: {runs[method][-1]['seconds']:.2f}s", flush=True)
        layout = layouts(root, args.repeat)

    results = {}
    for method, method_runs in runs.items():
        # the median run itself (the lower middle one for an even count), so its other fields match its time
        median_run = sorted(method_runs, key=lambda r: r["seconds"])[(len(method_runs) - 1) // 2]
        results[method] = {**median_run,
                           "all_seconds": [r["seconds"] for r in method_runs],
                           "peak_rss_mb": max(r["peak_rss_mb"] for r in method_runs)}
        rows = results[method]["rows"]  # None for the step that reads nothing
        results[method]["rows_per_s"] = rows / results[method]["seconds"] if rows else None
    seconds = {method: r["seconds"] for method, r in results.items()}
    ratios = {
        "ratio_to_floor": seconds["netassets"] / seconds["floor"],
        "warm_ratio_to_floor": seconds["warm"] / seconds["floor"],
        "ratio_to_parse": seconds["netassets"] / seconds["parse"],
        "speedup_vs_pandas": seconds["pandas"] / seconds["netassets"],
        "warm_speedup_vs_pandas": seconds["pandas"] / seconds["warm"],
        "pandas_ratio_to_floor": seconds["pandas"] / seconds["floor"],
        "dagster_ratio_to_floor": seconds["dagster"] / seconds["floor"],
    }
    # A cold run does a warm run's work and gx's: however the two overlap, it cannot take less
    # than the longer of the warm run and their CPU seconds spread over every core.
    cores = os.cpu_count() or 1
    cold_bound = max(seconds["warm"], (results["warm"]["cpu_s"] + results["gx"]["cpu_s"]) / cores)
    ratios.update(cores=cores, cold_lower_bound_s=cold_bound, cold_lower_bound_ratio_to_floor=cold_bound / seconds["floor"],
                  cold_lower_bound_speedup_vs_pandas=seconds["pandas"] / cold_bound)
    print(f"\nLENS raw -> clean groups with every check, {results['floor']['rows']:,} rows ({args.hours} h, 1 region), "
          f"median of {args.repeat}")
    print(f"{'method':<10} {'seconds':>8} {'x floor':>8} {'CPU s':>6} {'step s':>7} {'rows/s':>12} {'peak RSS MB':>12} "
          f"{'groups':>7}")
    for name, r in results.items():
        step = f"{r['step_seconds']:.2f}" if "step_seconds" in r else "-"
        rate = f"{r['rows_per_s']:,.0f}" if r["rows_per_s"] else "-"
        print(f"{name:<10} {r['seconds']:>8.2f} {r['seconds'] / seconds['floor']:>8.2f} {r['cpu_s']:>6.2f} {step:>7} "
              f"{rate:>12} {r['peak_rss_mb']:>12.0f} {str(r['groups'] or '-'):>7}")
    print(f"\nnetassets: {ratios['ratio_to_floor']:.2f}x the count(*) floor (target <= 4x), {ratios['ratio_to_parse']:.2f}x "
          f"the four-column parse, {ratios['speedup_vs_pandas']:.1f}x faster than pandas (target >= 5x), "
          f"peak RSS {results['netassets']['peak_rss_mb']:.0f} MB (target <= 1024)")
    print(f"warm (a process prepared as the warm launcher prepares one): {ratios['warm_ratio_to_floor']:.2f}x the floor, "
          f"{ratios['warm_speedup_vs_pandas']:.1f}x faster than pandas")
    print(f"dagster (the same run of a step that does no work): {ratios['dagster_ratio_to_floor']:.2f}x the floor")
    print(f"cold cannot take less than max(warm, (warm CPU + gx CPU) / {cores} cores) = {cold_bound:.2f} s here: "
          f"{ratios['cold_lower_bound_ratio_to_floor']:.2f}x the floor, "
          f"{ratios['cold_lower_bound_speedup_vs_pandas']:.1f}x faster than pandas at best")
    if results["netassets"]["groups"] != results["pandas"]["groups"]:
        print(f"note: group counts differ: netassets {results['netassets']['groups']} vs pandas {results['pandas']['groups']}")
    print(f"\nlens_clean_groups layouts ({layout['groups']} groups; write = partition replace committed, read = the "
          f"nearest fill as a matrix, as lens_group_features reads it)")
    print(f"{'layout':<44} {'write s':>8} {'read s':>8} {'MB':>6}")
    for name, r in layout["results"].items():
        print(f"{name:<44} {r['write_s']:>8.2f} {r['read_s']:>8.2f} {r['mb']:>6.0f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"hours": args.hours, "repeat": args.repeat, "results": results, **ratios,
                                    "layouts": layout}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
