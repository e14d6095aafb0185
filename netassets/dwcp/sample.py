"""DWCP link telemetry (seed 003's distributions): per-link minute series, one CSV per region and day.

The seed's generator draws every categorical column afresh on every row and starts at the wall
clock, so no row belongs to a series. Here each link ``(node_id, peer_id)`` keeps its zone, link
type, mode, tier and transport, and emits one row a minute from a fixed ``--start``; the numeric
columns follow the seed's formulas exactly (UTC hours). The same ``--seed`` gives the same files
whatever ``--days`` is, because each (region, link, day) has its own random stream.

``expected_targets`` is the generator's noise-free oracle: E[target | hour, weekday] computed
once by Monte Carlo of these formulas. No model can beat it on this data, and it means nothing on
any other data: beside each CSV the generator writes ``<day>.generator.json`` (its arguments and
the CSV's SHA-256), and ``is_generated`` tells the windows asset whether the oracle applies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from netassets.core.files import atomic_write, write_json
from netassets.core.settings import landing_dir, safe_name, sample_start
from netassets.dwcp.schema import CATEGORIES, COLUMNS, NAME, TARGETS

MINUTES_PER_DAY = 24 * 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=2, help="number of days from --start")
    parser.add_argument("--start", default=sample_start(), help="first day, YYYY-MM-DD (UTC; NETASSETS_SAMPLE_START)")
    parser.add_argument("--regions", default="us-east-1,eu-west-1", help="comma-separated regions")
    parser.add_argument("--links", type=int, default=3, help="links (node/peer pairs) per region")
    parser.add_argument("--missing-rate", type=float, default=0.0,
                        help="fraction of minutes dropped at random, to leave gaps in the series")
    parser.add_argument("--seed", type=int, default=42, help="random seed (the same seed gives the same files)")
    parser.add_argument("--out", help="landing folder (default: $NETASSETS_HOME/landing/dwcp)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files (raw files are otherwise never touched)")


def generate(args: argparse.Namespace) -> list[Path]:
    if args.days < 1 or args.links < 1:
        raise ValueError("--days and --links must be at least 1")
    if not 0 <= args.missing_rate < 1:
        raise ValueError(f"--missing-rate must be in [0, 1), got {args.missing_rate}")
    start = dt.date.fromisoformat(args.start)
    regions = [safe_name(r.strip(), "region") for r in args.regions.split(",") if r.strip()]
    out = Path(args.out) if args.out else landing_dir(NAME)
    written = []
    for region in regions:
        for offset in range(args.days):
            day = start + dt.timedelta(days=offset)
            path = out / region / f"{day.isoformat()}.csv"
            if path.exists() and not args.overwrite:
                raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
            frame = day_frame(region, day, args.links, args.seed, args.missing_rate)
            atomic_write(path, frame.write_csv)  # the landing sensor never sees half a file
            provenance = {"generator": __name__, "seed": args.seed, "links": args.links,
                          "missing_rate": args.missing_rate, "sha256": _sha256(path)}
            write_json(sidecar(path), provenance)
            written.append(path)
    print(f"wrote {len(written)} file(s) under {out}")
    return written


def sidecar(path: Path) -> Path:
    return path.with_suffix(".generator.json")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_generated(path: Path) -> bool:
    """True when ``path`` is a CSV this generator wrote and nobody changed since."""
    marker = sidecar(path)
    if not (path.is_file() and marker.is_file()):
        return False
    try:
        return json.loads(marker.read_text()).get("sha256") == _sha256(path)
    except (ValueError, AttributeError):  # a damaged marker proves nothing
        return False


def _region_stream(region: str, seed: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(region.encode()), *extra])


def links(region: str, count: int, seed: int) -> pl.DataFrame:
    """The region's links and their fixed attributes, with the seed's category probabilities."""
    rng = _region_stream(region, seed)
    return pl.DataFrame({
        "node_id": rng.choice(np.arange(1000, 2000), count, replace=False),
        "peer_id": rng.choice(np.arange(2000, 3000), count, replace=False),
        "az": [f"{region}{z}" for z in rng.choice(list("abc"), count)],
        "link_type": rng.choice(CATEGORIES["link_type"], count, p=[0.4, 0.4, 0.2]),
        "dwcp_mode": rng.choice(CATEGORIES["dwcp_mode"], count, p=[0.5, 0.3, 0.2]),
        "network_tier": rng.choice(["Premium", "Standard", "Economy"], count, p=[0.3, 0.5, 0.2]),
        "transport_type": rng.choice(CATEGORIES["transport_type"], count, p=[0.6, 0.3, 0.1]),
    })


def simulate(hours: np.ndarray, weekdays: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The seed's formulas for the numeric columns, one value per (hour, weekday) given."""
    n = len(hours)
    business = np.where((hours >= 9) & (hours <= 17), 1.5, 1.0)
    weekend = np.where(weekdays >= 5, 0.7, 1.0)
    throughput = (500 + 200 * np.sin(hours * 2 * np.pi / 24)) * business * weekend
    throughput = np.clip(throughput + rng.normal(0, 50, n), 10, 1000)
    rtt = np.clip(50 - (throughput - 500) / 20 + rng.normal(0, 5, n), 5, 150)
    jitter = np.clip(rtt * 0.1 + rng.exponential(2, n), 0.1, 20)
    congestion = (1000 - throughput) / 1000
    loss = np.clip(congestion * 0.05 + rng.exponential(0.001, n), 0, 0.1)
    bytes_tx = (throughput * 1024 * 1024 / 8) * 60 * rng.uniform(0.8, 1.2, n)
    return {
        "rtt_ms": rtt,
        "jitter_ms": jitter,
        "throughput_mbps": throughput,
        "bytes_tx": bytes_tx.astype(np.int64),
        "bytes_rx": (bytes_tx * rng.uniform(0.9, 1.1, n)).astype(np.int64),
        "packet_loss": loss,
        "retransmits": (loss * 1000 + rng.poisson(5, n)).astype(np.int64),
        "congestion_window": np.clip((throughput * 2 + rng.normal(0, 100, n)).astype(np.int64), 100, 2000),
        "queue_depth": np.clip((congestion * 100 + rng.exponential(10, n)).astype(np.int64), 0, 200),
    }


def day_frame(region: str, day: dt.date, link_count: int, seed: int, missing_rate: float = 0.0) -> pl.DataFrame:
    midnight = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc).timestamp())
    timestamps = midnight + 60 * np.arange(MINUTES_PER_DAY, dtype=np.int64)
    hours = np.arange(MINUTES_PER_DAY) // 60
    weekdays = np.full(MINUTES_PER_DAY, day.weekday())
    parts = []
    for index, link in enumerate(links(region, link_count, seed).iter_rows(named=True)):
        rng = _region_stream(region, seed, index, day.toordinal())
        keep = rng.random(MINUTES_PER_DAY) >= missing_rate
        series = simulate(hours, weekdays, rng)
        parts.append(pl.DataFrame({
            "timestamp": timestamps, "region": region, **{k: link[k] for k in link},
            **series, "time_of_day": hours, "day_of_week": weekdays,
        }).filter(pl.Series(keep)))
    return pl.concat(parts).select(list(COLUMNS)).cast(COLUMNS).sort("timestamp", "node_id")


@lru_cache(maxsize=1)
def _expectation_table(draws: int = 40_000) -> np.ndarray:
    """E[target | hour, weekend] for the 4 targets, shape (24, 2, 4), by Monte Carlo."""
    rng = np.random.default_rng(20240101)
    table = np.empty((24, 2, len(TARGETS)))
    for hour in range(24):
        for weekend, weekday in enumerate((0, 5)):
            series = simulate(np.full(draws, hour), np.full(draws, weekday), rng)
            table[hour, weekend] = [series[t].mean() for t in TARGETS]
    return table


def expected_targets(timestamps: np.ndarray) -> np.ndarray:
    """The noise-free oracle for targets observed at these Unix timestamps (UTC), shape (n, 4)."""
    moments = np.asarray(timestamps, dtype="datetime64[s]")
    hours = (moments.astype("datetime64[h]") - moments.astype("datetime64[D]")).astype(int)
    weekdays = (moments.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    return _expectation_table()[hours, (weekdays >= 5).astype(int)]
