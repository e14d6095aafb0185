"""Write seed-format packet-feature flow files (features_tls_*.csv) in the traffic landing layout.

    netassets generate traffic --sites edge-a,edge-b --days 2 --flows 300 --features 146 --out DIR

Writes DIR/<site>/<YYYY-MM-DD>/features_tls_<day>.csv (DIR defaults to the traffic landing
folder). Each flow follows one of a few protocol templates: a repeating cycle of packet
prototypes (sparse one-hot-like fields, a direction of +1/-1, a length and a gap) with
noise. Consecutive packets differ, so "next packet = this packet" is a weak predictor while
a sequence model can learn the cycles.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Iterator

import numpy as np

from netassets.core.files import atomic_write
from netassets.core.settings import landing_dir, safe_name, sample_start


def protocol_templates(rng: np.random.Generator, n_features: int, n_templates: int = 4) -> list[np.ndarray]:
    """Per protocol, a cycle of 2-4 packet prototypes (the same protocols at every site and day)."""
    if n_features < 2:
        raise ValueError(f"need at least 2 features per packet, got {n_features}")
    templates = []
    for _ in range(n_templates):
        period = int(rng.integers(2, 5))
        protos = (rng.random((period, n_features)) < 0.2).astype(np.float64)
        protos[:, 0] = np.where(np.arange(period) % 2 == 0, 1.0, -1.0)  # direction alternates
        if n_features > 2:
            protos[:, 1] = rng.integers(40, 1500, size=period)  # packet length
        if n_features > 3:
            protos[:, 2] = rng.exponential(0.05, size=period)  # inter-arrival
        templates.append(protos)
    return templates


def synthetic_flows(
    rng: np.random.Generator, n_flows: int, templates: list[np.ndarray], min_packets: int = 5, max_packets: int = 60
) -> Iterator[np.ndarray]:
    if not 1 <= min_packets <= max_packets:
        raise ValueError(f"need 1 <= min_packets <= max_packets, got {min_packets}, {max_packets}")
    for _ in range(n_flows):
        protos = templates[rng.integers(len(templates))]
        n = int(rng.integers(min_packets, max_packets + 1))
        packets = protos[np.arange(n) % len(protos)]
        yield packets * rng.normal(1.0, 0.05, size=packets.shape) + rng.normal(0, 0.01, size=packets.shape)


def flow_line(packets: np.ndarray) -> str:
    """One flow in the seed's format: comma-separated JSON arrays, one per packet."""
    return ",".join("[" + ",".join(f"{v:.5g}" for v in packet) + "]" for packet in packets)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="landing folder (default: $NETASSETS_HOME/landing/traffic)")
    parser.add_argument("--sites", default="edge-a,edge-b", help="comma-separated capture sites")
    parser.add_argument("--start", default=sample_start(), help="first day, YYYY-MM-DD (NETASSETS_SAMPLE_START)")
    parser.add_argument("--days", type=int, default=2, help="number of days from --start")
    parser.add_argument("--flows", type=int, default=200, help="flows per site and day")
    parser.add_argument("--features", type=int, default=146, help="features per packet (146 in the seed)")
    parser.add_argument("--max-packets", type=int, default=60, help="most packets per flow")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same files)")


def generate(args: argparse.Namespace) -> list[Path]:
    out = Path(args.out) if args.out else landing_dir("traffic")
    sites = [safe_name(s.strip(), "site") for s in args.sites.split(",") if s.strip()]
    start = dt.date.fromisoformat(args.start)
    if not sites or args.days < 1 or args.flows < 1:
        raise ValueError("need at least one site, one day and one flow")
    rng = np.random.default_rng(args.seed)
    templates = protocol_templates(rng, args.features)
    written = []
    for site in sites:
        for offset in range(args.days):
            day = (start + dt.timedelta(days=offset)).isoformat()
            path = out / site / day / f"features_tls_{day}.csv"
            if path.exists():
                raise FileExistsError(f"{path} exists; landing files are never overwritten")
            flows = synthetic_flows(rng, args.flows, templates, max_packets=args.max_packets)
            atomic_write(path, lambda handle: handle.write("".join(flow_line(f) + "\n" for f in flows).encode()))
            written.append(path)
    print(f"wrote {len(written)} files under {out}")
    return written
