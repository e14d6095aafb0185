"""Flows parsed once: the fast readers (simdjson, orjson) equal the stdlib one, traffic_flows' packet cache holds
exactly the parsed packets, a changed landing file invalidates it, training never parses text in
an epoch, and parsing plus caching a large file keeps memory bounded."""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import polars as pl
import pytest

from netassets.core.settings import SHARED_DATA_DIR
from netassets.traffic import cache, packet_file, readers, sample, train
from netassets.traffic.cache import CachedFlows
from netassets.traffic.packet_file import PacketCache, cache_path
from netassets.traffic.readers import FlowFile, index_files
from netassets.traffic.split import assign_splits


@pytest.fixture
def landing(tmp_path, netassets_home):
    sample.generate(argparse.Namespace(out=tmp_path / "landing", sites="s1,s2", start="2024-01-01", days=1,
                                       flows=30, features=6, max_packets=12, seed=1))
    return tmp_path / "landing"


def stdlib_and_fast(path):
    with FlowFile(path) as flow_file:
        for record in flow_file.records():
            raw = flow_file._mm[record.offset : record.offset + record.length]
            old = (readers._parse_csv_line_stdlib if flow_file.format == ".csv" else readers._parse_flow_object_stdlib)(raw)
            yield old, flow_file.read(record)


def test_fast_parser_equals_stdlib_parser_on_sample_data(landing):
    files = sorted(landing.rglob("*.csv"))
    real = SHARED_DATA_DIR / "traffic" / "cicdoh20_test.json"  # the real CIC-DoH sample, where present
    pairs = [pair for path in files + ([real] if real.is_file() else []) for pair in stdlib_and_fast(path)]
    assert len(pairs) >= 60
    for old, new in pairs:
        assert old.dtype == new.dtype == np.float64 and new.flags.writeable
        np.testing.assert_array_equal(old, new)  # bit for bit


def test_fast_parser_refusals_keep_the_stdlib_messages():
    for raw in (b"[1,NaN]", b"[1,2],[Infinity,0]", b"[1,1" + b"0" * 400 + b"]", b"[1,2],[3]", b"1,2", b"[1,null]",
                b'[1,"x"]', b"[\xff]", b"[1,\x00]", b"[]",
                # what simdjson's flattening buffer would accept: nested arrays, the same total of values
                b"[1,[2],3],[4,5,6]", b"[[1],[2]],[3,4]", b"[1,2],[3,4,5],[6]", b"[1,[]],[2,3]", b"[1,2],[]",
                # numbers and tokens simdjson refuses or reads otherwise than the stdlib does
                b"[1e400,0]", b"[-1e400,0]", b"[01,2]", b"[1,2] x", b'[1,"[2]"]', b"[1,2],[3,4],", b"[1.,2]",
                b"[.5,2]"):
        with pytest.raises(readers.BadFlowError) as fast:
            readers._parse_csv_line(raw)
        with pytest.raises(readers.BadFlowError) as old:
            readers._parse_csv_line_stdlib(raw)
        assert (fast.value.reason, str(fast.value)) == (old.value.reason, str(old.value))


def test_fast_parser_reads_edge_numbers_as_the_stdlib_does():
    """Integers beyond 2**53 (rounded to nearest), at the 64-bit limits, negative zero,
    underflow to zero, exponents: simdjson's doubles equal Python's float() bit for bit."""
    for raw in (b"[9007199254740993,-9007199254740993],[18446744073709551615,-9223372036854775808]",
                b"[-0.0,1E-400],[2.2250738585072014e-308,4.9e-324]", b"[1.7976931348623157e308,-1e-7]",
                b"[0.1,0.30000000000000004],[123456789.123456789e-3,7]", b" [ 1 , 2 ] , [3,4] "):
        fast, old = readers._parse_csv_line(raw), readers._parse_csv_line_stdlib(raw)
        assert readers._simdjson_rows(raw) is not None  # the fast path itself read it
        assert fast.tobytes() == old.tobytes() and fast.shape == old.shape
    # integers beyond 64 bits and booleans: simdjson refuses them, the stdlib path reads them as before
    for raw in (b"[18446744073709551616,0]", b"[-9223372036854775809,0]", b"[1,true],[0,false]"):
        assert readers._simdjson_rows(raw) is None
        np.testing.assert_array_equal(readers._parse_csv_line(raw), readers._parse_csv_line_stdlib(raw))


def test_fast_parser_keeps_one_parser_per_thread(landing):
    """simdjson's parser is not thread-safe: flows read on several threads at once still equal
    the stdlib parser's."""
    from concurrent.futures import ThreadPoolExecutor

    lines = [line for path in sorted(landing.rglob("*.csv")) for line in path.read_bytes().splitlines() if line]
    with ThreadPoolExecutor(4) as pool:
        for raw, fast in zip(lines * 4, pool.map(readers._parse_csv_line, lines * 4)):
            np.testing.assert_array_equal(fast, readers._parse_csv_line_stdlib(raw))


def test_a_flow_longer_than_the_reused_parsers_limit_leaves_no_memory_behind():
    """A parser keeps the buffers of the longest line it parsed: a 40 MB flow, parsed and let go,
    must not leave its ~200 MB with the thread (it did with one parser per thread for every line)."""
    probe = """
import gc
from netassets.traffic import readers
def rss_mb(): return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20
line = b",".join([b"[" + b",".join([b"0.125"] * 146) + b"]"] * 48_000)
assert len(line) > readers.REUSED_PARSER_MAX_BYTES
before = rss_mb()
packets = readers._parse_csv_line(line)
assert packets.shape == (48_000, 146) and (packets == 0.125).all()
del packets; gc.collect()
print(rss_mb() - before)
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 40, done.stdout


def test_cache_round_trip_equals_the_parsed_packets(landing, netassets_home):
    files = sorted(landing.rglob("*.csv"))
    root = netassets_home / "cache" / "traffic"
    index = index_files(files, landing, cache=root)
    for path in files:
        name = path.relative_to(landing).as_posix()
        target = cache_path(root, name)
        assert target == root / path.parent.relative_to(landing) / f"{path.name}.packets"
        rows = index.frame.filter(pl.col("source_file") == name)
        with PacketCache(target) as packets, FlowFile(path) as flow_file:
            assert packets.fresh_for(path, (path.stat().st_size, path.stat().st_mtime_ns))
            assert packets.records[:, 1].tolist() == rows["byte_offset"].to_list()
            assert packets.records[:, 4].tolist() == rows["n_packets"].to_list()
            for i, record in enumerate(flow_file.records()):
                np.testing.assert_array_equal(packets.flow(i), flow_file.read(record))
    assert not list(root.rglob("*.tmp"))  # written by rename, nothing left beside


def test_skipped_flows_are_not_cached(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"[1,2]\n[1,NaN]\n[3,4],[5,6]\n")
    index = index_files([path], tmp_path, skip_bad=True, cache=tmp_path / "cache")
    with PacketCache(cache_path(tmp_path / "cache", "f.csv")) as packets:
        assert packets.records[:, 0].tolist() == index.frame["line_no"].to_list() == [1, 3]
        np.testing.assert_array_equal(packets.flow(1), [[3, 4], [5, 6]])


def test_a_failed_scan_leaves_no_cache(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"[1,2]\n[1,NaN]\n")
    with pytest.raises(readers.BadFlowError, match="non-finite"):
        index_files([path], tmp_path, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def split_index(landing, files, root):
    frame = index_files(files, landing, cache=root).frame
    sites = [name.split("/")[0] for name in frame["source_file"]]
    return assign_splits(frame.with_columns(day=pl.lit(dt.date(2024, 1, 1)), site=pl.Series(sites)), 0.2, 0.2)[0]


def test_changed_file_invalidates_its_cache(landing, netassets_home):
    files = sorted(landing.rglob("*.csv"))
    root = netassets_home / "cache" / "traffic"
    index = split_index(landing, files, root)
    with CachedFlows(index, landing, root) as flows:
        assert flows.rebuilt == []  # traffic_flows wrote them
        first = flows[0]
    # the file is rewritten: other bytes, same size; re-indexed with a new mtime
    path = landing / index["source_file"][0]
    raw = path.read_bytes()
    at = next(i for i, byte in enumerate(raw) if chr(byte).isdigit())  # the first digit of flow 1
    path.write_bytes(raw[:at] + (b"2" if raw[at : at + 1] == b"1" else b"1") + raw[at + 1 :])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    target = cache_path(root, index["source_file"][0])
    stat = path.stat()
    assert packet_file.open_fresh(target, path, (stat.st_size, stat.st_mtime_ns)) is None  # stale: not used
    fresh = index_files(files, landing).frame  # re-indexed without writing caches
    fresh = fresh.join(index.select("source_file", "byte_offset", "split"), on=["source_file", "byte_offset"])
    with CachedFlows(fresh, landing, root) as flows:
        assert flows.rebuilt == [target]  # rebuilt once, from the changed file
        changed = flows[0]
        with train.Flows(fresh, landing) as text:
            np.testing.assert_array_equal(changed, text[0])
    assert not np.array_equal(first, changed)
    with CachedFlows(fresh, landing, root) as flows:
        assert flows.rebuilt == []  # and not again


def test_a_missing_cache_is_rebuilt_once_and_equals_the_text(landing, netassets_home):
    files = sorted(landing.rglob("*.csv"))
    root = netassets_home / "cache" / "traffic"
    index = split_index(landing, files, root)
    for target in cache.paths_of(index, root):
        target.unlink()
    assert len(cache.ensure(index, landing, root)) == len(files)
    assert cache.ensure(index, landing, root) == []
    with CachedFlows(index, landing, root) as flows, train.Flows(index, landing) as text:
        for i in range(len(index)):
            np.testing.assert_array_equal(flows[i], text[i])


def test_an_epoch_never_parses_text(tmp_path, landing, netassets_home, monkeypatch):
    files = sorted(landing.rglob("*.csv"))
    index = split_index(landing, files, netassets_home / "cache" / "traffic")
    index.write_parquet(tmp_path / "flows.parquet")
    train.TrainConfig(seq_len=12, hidden_size=8, epochs=3, batch_size=16).write(tmp_path / "config.json")

    def no_parsing(*args, **kwargs):
        raise AssertionError("text parsed during training")

    for name in ("_parse_csv_line", "_parse_csv_line_stdlib", "_parse_flow_object", "_parse_flow_object_stdlib"):
        monkeypatch.setattr(readers, name, no_parsing)
    monkeypatch.setattr(readers.FlowFile, "read", no_parsing)
    monkeypatch.setattr(readers.FlowFile, "records", no_parsing)
    threads = train.torch.get_num_threads()
    try:
        train.main([f"--config={tmp_path / 'config.json'}", f"--flows={tmp_path / 'flows.parquet'}",
                    f"--landing={landing}", f"--checkpoint={tmp_path / 'run' / 'checkpoint.pt'}",
                    f"--weights={tmp_path / 'run' / 'model.safetensors'}", f"--report={tmp_path / 'report.json'}"])
    finally:
        train.torch.set_num_threads(threads)
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["history"]) == 3 and report["flows"]["train"] > 0


def test_parsing_and_caching_a_large_file_keeps_memory_bounded(tmp_path):
    """~40 MB of seed-format text (the same 100 flows over and over): Python's allocations stay
    far below the file's size while it is parsed, cached and read back."""
    rng = np.random.default_rng(0)
    pool = b"".join((sample.flow_line(f) + "\n").encode()
                    for f in sample.synthetic_flows(rng, 100, sample.protocol_templates(rng, 146), max_packets=60))
    path = tmp_path / "big.csv"
    with path.open("wb") as out:
        while out.tell() < 40 << 20:
            out.write(pool)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        index = index_files([path], tmp_path, cache=tmp_path / "cache").frame
        _, parse_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        index = index.with_columns(split=pl.lit("train"))
        with CachedFlows(index, tmp_path, tmp_path / "cache") as flows:
            total = sum(len(flows[i]) for i in range(len(flows)))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == index["n_packets"].sum()
    cached = cache_path(tmp_path / "cache", "big.csv").stat().st_size
    assert cached > size // 2  # float64 packets: about the size of the text, never held in memory at once
    assert parse_peak < 8 << 20 and read_peak < 8 << 20, (parse_peak, read_peak)


def test_the_cache_of_a_deleted_landing_file_goes_with_the_next_index(landing, netassets_home, monkeypatch):
    from netassets.traffic.ingest import index_partition

    monkeypatch.setenv("NETASSETS_TRAFFIC_ROOT", str(landing))
    day, site = dt.date(2024, 1, 1), "s1"
    (kept,) = sorted((landing / site / day.isoformat()).glob("*.csv"))
    deleted = kept.with_name("second_capture.csv")
    deleted.write_bytes(kept.read_bytes())
    root = netassets_home / "cache" / "traffic"
    first = index_partition(day, site, skip_bad=False)
    caches = {path: cache_path(root, path.relative_to(landing).as_posix()) for path in (kept, deleted)}
    assert all(c.is_file() for c in caches.values()) and first.removed_caches == []
    other_site = cache_path(root, next((landing / "s2").rglob("*.csv")).relative_to(landing).as_posix())
    index_partition(day, "s2", skip_bad=False)

    deleted.unlink()
    second = index_partition(day, site, skip_bad=False)
    assert second.removed_caches == [caches[deleted]] and second.summary()["orphan_caches_removed"] == 1
    assert not caches[deleted].exists() and caches[kept].is_file() and other_site.is_file()


def test_a_killed_writers_temporary_cache_is_removed_a_live_ones_kept(tmp_path):
    """A writer killed mid-write left its temporary file (up to a whole cache) for good."""
    import time

    directory = tmp_path / "site" / "2024-01-01"
    directory.mkdir(parents=True)
    abandoned = directory / f".flows.csv{packet_file.SUFFIX}.k1l2.tmp"
    live = directory / f".other.csv{packet_file.SUFFIX}.a8b9.tmp"
    for path in (abandoned, live):
        path.write_bytes(b"\0" * 64)
    then = time.time() - packet_file.ABANDONED_AFTER_S - 60
    os.utime(abandoned, (then, then))
    assert packet_file.remove_orphans(directory, keep=[]) == [abandoned]
    assert live.exists() and not abandoned.exists()
