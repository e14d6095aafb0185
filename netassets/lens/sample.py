"""Generate Starlink-like LENS irtt latency traces in the real LENS layout.

Layout: ``{out}/{region}/{date}/irtt-10ms-1h-{date}-{HH}-00-00.csv`` with columns
``timestamp`` (ns since epoch), ``rtt``, ``uplink``, ``downlink`` (ms); a lost packet is
``-1`` in all three. One sample every 10 ms (100/s, 8.64 M rows a day at full rate).

Starlink reassigns satellites every 15 s at seconds :12, :27, :42 and :57; each such slot
draws one latency regime (base level, jitter, loss bursts) from a sticky Markov chain, on top
of a small region-specific baseline. ``slot-regimes-{date}.csv`` beside the hour files records
every slot's regime so clustering can be scored against the truth. Same seed, same bytes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from netassets.core.settings import landing_dir, safe_name, sample_start
from netassets.lens.raw import hour_path

SLOT_NS = 15_000_000_000
SLOT_OFFSET_NS = 12_000_000_000  # slots start at seconds :12/:27/:42/:57 (epoch seconds % 15 == 12)
SAMPLE_NS = 10_000_000


@dataclass(frozen=True)
class Regime:
    name: str
    base_ms: float  # added to the region's baseline
    jitter_ms: float  # std of per-packet latency noise
    loss: float  # independent per-packet loss probability
    bursts_per_slot: float  # mean number of loss bursts in a slot
    burst_len: int  # mean burst length in samples


REGIMES = (
    Regime("calm", 0.0, 1.5, 0.002, 0.0, 0),
    Regime("elevated", 14.0, 2.5, 0.004, 0.0, 0),
    Regime("jittery", 6.0, 9.0, 0.01, 0.0, 0),
    Regime("lossy", 2.0, 3.0, 0.02, 2.0, 25),
    Regime("congested", 32.0, 5.0, 0.006, 0.0, 0),
    Regime("far_satellite", 22.0, 2.0, 0.003, 0.5, 10),
)
# Regimes persist: a slot keeps the previous slot's regime with this probability.
STICKINESS = 0.6
# Region baselines differ by a few ms only, so latency regimes (not regions) dominate the clusters.
KNOWN_BASELINES_MS = {"chicago": 28.0, "frankfurt": 31.0, "ottawa": 30.0, "seychelles": 34.0, "vancouver": 27.0, "victoria": 29.0}


def region_baseline_ms(region: str) -> float:
    return KNOWN_BASELINES_MS.get(region, 26.0 + (zlib.crc32(region.encode()) % 900) / 100.0)


def _rng(seed: int, region: str, day: dt.date) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(region.encode()), day.toordinal()])


def slot_regimes(rng: np.random.Generator, n_slots: int) -> np.ndarray:
    fresh = rng.integers(0, len(REGIMES), n_slots)
    keep = rng.random(n_slots) < STICKINESS
    regimes = np.empty(n_slots, dtype=np.int64)
    regimes[0] = fresh[0]
    for i in range(1, n_slots):
        regimes[i] = regimes[i - 1] if keep[i] else fresh[i]
    return regimes


def generate_day(region: str, day: dt.date, seed: int, hours: int = 24, rate_hz: int = 100) -> tuple[dict[int, pl.DataFrame], pl.DataFrame]:
    """Return ({hour: frame}, slot table) for one region-day."""
    if not 1 <= hours <= 24:
        raise ValueError(f"hours must be in 1..24, got {hours}")
    if rate_hz <= 0 or 100 % rate_hz:
        raise ValueError(f"rate must divide 100 samples/s, got {rate_hz}")
    rng = _rng(seed, region, day)
    day_start_ns = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000_000
    step_ns = SAMPLE_NS * (100 // rate_hz)
    n = hours * 3600 * 1_000_000_000 // step_ns
    nominal = day_start_ns + np.arange(n, dtype=np.int64) * step_ns
    # irtt sends on a timer; receive stamps wobble by well under half a 10 ms tick.
    timestamps = nominal + rng.normal(0.0, 0.4e6, n).astype(np.int64)

    slot_index = (nominal - day_start_ns + (SLOT_NS - SLOT_OFFSET_NS)) // SLOT_NS  # slot 0 = the one open at 00:00:00
    n_slots = int(slot_index[-1]) + 1
    regimes = slot_regimes(rng, n_slots)
    table = np.array([(r.base_ms, r.jitter_ms, r.loss, r.bursts_per_slot, r.burst_len) for r in REGIMES])
    per_sample = table[regimes[slot_index]]

    baseline = region_baseline_ms(region)
    # A slow orbital drift within each slot plus per-packet noise.
    phase = ((nominal - day_start_ns + (SLOT_NS - SLOT_OFFSET_NS)) % SLOT_NS) / SLOT_NS
    rtt = baseline + per_sample[:, 0] + 1.5 * phase + np.abs(rng.normal(0.0, 1.0, n)) * per_sample[:, 1]
    lost = rng.random(n) < per_sample[:, 2]
    samples_per_slot = SLOT_NS // step_ns
    for slot in np.flatnonzero(table[regimes, 3] > 0):
        reg = REGIMES[regimes[slot]]
        first = int(np.searchsorted(slot_index, slot))
        for _ in range(rng.poisson(reg.bursts_per_slot)):
            start = first + int(rng.integers(0, samples_per_slot))
            lost[start : start + max(1, int(rng.exponential(reg.burst_len)))] = True
    uplink = rtt * rng.uniform(0.35, 0.5, n)
    downlink = rtt - uplink
    rtt, uplink, downlink = (np.where(lost, -1.0, np.round(x, 3)) for x in (rtt, uplink, downlink))

    hour_of = (nominal - day_start_ns) // 3_600_000_000_000
    frame = pl.DataFrame({"timestamp": timestamps, "rtt": rtt, "uplink": uplink, "downlink": downlink})
    bounds = np.searchsorted(hour_of, np.arange(hours + 1))
    hourly = {h: frame.slice(int(bounds[h]), int(bounds[h + 1] - bounds[h])) for h in range(hours)}

    slot_starts = day_start_ns - (SLOT_NS - SLOT_OFFSET_NS) + np.arange(n_slots, dtype=np.int64) * SLOT_NS
    slots = pl.DataFrame(
        {
            "slot_start_ns": slot_starts,
            "regime": regimes,
            "regime_name": [REGIMES[r].name for r in regimes],
        }
    )
    return hourly, slots


def write_lens(out: Path, regions: list[str], start: dt.date, days: int, seed: int, hours: int = 24, rate_hz: int = 100) -> list[Path]:
    for region in regions:
        safe_name(region, "region")
    existing = [path for region in regions for offset in range(days) for hour in range(hours)
                if (path := hour_path(out, region, start + dt.timedelta(days=offset), hour)).exists()]
    if existing:
        raise FileExistsError(f"{existing[0]} exists ({len(existing)} of the hour files to write do); landing "
                              "files are never overwritten")
    written = []
    for region in regions:
        for offset in range(days):
            day = start + dt.timedelta(days=offset)
            hourly, slots = generate_day(region, day, seed, hours, rate_hz)
            for hour, frame in hourly.items():
                path = hour_path(out, region, day, hour)
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.write_csv(path, float_precision=3)
                written.append(path)
            slots.write_csv(out / region / day.isoformat() / f"slot-regimes-{day.isoformat()}.csv")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=1, help="number of days (default 1)")
    parser.add_argument("--regions", default="chicago,frankfurt", help="comma-separated region names")
    parser.add_argument("--out", type=Path, default=None, help="LENS root (default: the LENS landing folder)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same files)")
    parser.add_argument("--start", default=sample_start(), help="first day, YYYY-MM-DD (NETASSETS_SAMPLE_START)")
    parser.add_argument("--hours", type=int, default=24, help="hour files per day, from 00 (default 24)")
    parser.add_argument("--rate", type=int, default=100, help="samples per second, a divisor of 100 (default 100)")


def generate(args: argparse.Namespace) -> None:
    out = args.out or landing_dir("lens")
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    if not regions:
        raise ValueError("--regions needs at least one region")
    if args.days < 1:
        raise ValueError(f"--days must be >= 1, got {args.days}")
    files = write_lens(out, regions, dt.date.fromisoformat(args.start), args.days, args.seed, args.hours, args.rate)
    print(f"wrote {len(files)} hour files for {len(regions)} region(s) x {args.days} day(s) under {out}")
