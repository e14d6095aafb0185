"""Simulate perfSONAR packet-loss documents (and build them from the real esmond sample).

Writes ``{out}/{index}.ndjson`` in Elasticsearch _bulk format (action line + document line, load
it with ``curl -H 'Content-Type: application/x-ndjson' --data-binary @file URL/_bulk``) and
``{out}/{index}.truth.json`` listing the injected anomalous hours and the source and span they
label (perfsonar_anomaly_scores evaluates itself against the landing folder's truth files); with
``--url`` the documents are indexed into that cluster as well (keyword/date mapping).

The simulator: one source, many destinations, one measurement a minute each (600 packets,
binomial loss around a small per-destination rate), ~2 % missing minutes, a few duplicate
documents, short single-destination loss spikes (noise, not anomalies), and known anomalous
hours in which a share of the destinations loses 1-4 % of packets for 30-60 minutes. The first
day carries no anomaly (it is the reference for the second). Same seed, same documents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np

from netassets.core.settings import SHARED_DATA_DIR, landing_dir, safe_name, sample_start

PACKETS_PER_TEST = 600
MINUTE_MS = 60_000
INGEST_DELAY_MS = 120_000  # simulated documents were indexed two minutes after their measurement

NEW_MAPPING = {
    "mappings": {
        "properties": {
            "timestamp": {"type": "date", "format": "epoch_millis||strict_date_optional_time"},
            "indexed_at": {"type": "date", "format": "epoch_millis||strict_date_optional_time"},
            "src_host": {"type": "keyword"},
            "dest_host": {"type": "keyword"},
            "src_site": {"type": "keyword"},
            "dest_site": {"type": "keyword"},
            # Malformed values stay in _source (and are counted by the loader) instead of failing the bulk.
            "packet_loss": {"type": "float", "ignore_malformed": True},
        }
    }
}


@dataclass
class Simulation:
    documents: list[dict[str, Any]]
    anomalous_hours: list[dict[str, Any]] = field(default_factory=list)  # hour (ISO), destinations, minutes
    source: str = ""
    start: str = ""  # the simulated span [start, end), ISO hours: every hour in it is labelled
    end: str = ""

    def truth(self) -> dict[str, Any]:
        """The labels as ``netassets.perfsonar.evaluation.read_truth`` reads them."""
        return {"source": self.source, "start": self.start, "end": self.end, "anomalous_hours": self.anomalous_hours}

    def write_truth(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.truth(), indent=1))


def _day_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp() * 1000)


def iso_hour(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:00:00")


def simulate(
    start: dt.date,
    days: int = 2,
    source: str = "psb.example.org",
    destinations: int = 20,
    anomalies_per_day: int = 4,
    seed: int = 0,
    old_schema: bool = False,
    anomaly_hours: Sequence[int] | None = None,
) -> Simulation:
    """``anomaly_hours`` fixes the hours of day (UTC) of the anomalies; by default they are drawn."""
    safe_name(source, "source")
    rng = np.random.default_rng(seed)
    minutes = days * 1440
    t0 = _day_ms(start)
    dests = [f"ps{j:02d}.site{j % 7}.example.net" for j in range(destinations)]
    rate = np.exp(rng.uniform(np.log(1e-4), np.log(5e-3), destinations))
    extra = np.zeros((minutes, destinations))

    # Noise: ~3 short single-destination spikes per destination a day.
    for j in range(destinations):
        for _ in range(rng.poisson(3 * days)):
            at, length = rng.integers(0, minutes), rng.integers(1, 4)
            extra[at : at + length, j] += rng.uniform(0.05, 0.3)

    anomalies = []
    for d in range(1, days):
        drawn = rng.choice(24, size=min(anomalies_per_day, 24), replace=False)
        for h in drawn if anomaly_hours is None else anomaly_hours:
            hour_minute = d * 1440 + int(h) * 60
            duration = int(rng.integers(30, 61))
            offset = int(rng.integers(0, 61 - duration))
            hit = rng.choice(destinations, size=max(1, int(destinations * rng.uniform(0.3, 0.7))), replace=False)
            extra[hour_minute + offset : hour_minute + offset + duration, hit] += rng.uniform(0.01, 0.04, len(hit))
            anomalies.append({
                "hour": iso_hour(t0 + hour_minute * MINUTE_MS),
                "destinations": sorted(dests[j] for j in hit),
                "minutes": duration,
            })

    lost = rng.binomial(PACKETS_PER_TEST, np.clip(rate + extra, 0, 1))
    present = rng.random((minutes, destinations)) > 0.02
    src_key, dest_key = ("src", "dest") if old_schema else ("src_host", "dest_host")
    documents = []
    for m, j in zip(*np.nonzero(present)):
        ts = t0 + int(m) * MINUTE_MS + int(rng.integers(0, 60_000))
        copies = 2 if rng.random() < 0.005 else 1  # a re-sent measurement: the later one must win
        for k in range(copies):
            doc = {
                "timestamp": ts + k * 1000,
                src_key: source,
                dest_key: dests[j],
                "packet_loss": float(lost[m, j] if k == copies - 1 else rng.binomial(PACKETS_PER_TEST, 0.5))
                / PACKETS_PER_TEST,
                "indexed_at": ts + k * 1000 + INGEST_DELAY_MS,
            }
            if not old_schema:
                doc["src_site"] = "SIM-SOURCE"
                doc["dest_site"] = dests[j].split(".")[1].upper()
            doc["_id"] = f"{source}|{dests[j]}|{doc['timestamp']}"
            documents.append(doc)
    return Simulation(documents, sorted(anomalies, key=lambda a: a["hour"]), source, iso_hour(t0),
                      iso_hour(t0 + minutes * MINUTE_MS))


def real_documents(day: dt.date, source: str = "esmond.example.org", data_dir: Path | None = None) -> list[dict]:
    """The esmond sample (24 h of one path, packet_count_lost / packet_count_sent per minute) as
    packet-loss documents: loss = lost / sent of the same minute, the series moved to start at
    ``day`` 00:00 UTC (whole minutes, spacing kept). Minutes with nothing sent are no measurement
    and are left out; minutes with lost > sent stay in, and the loader counts them as out of range."""
    folder = (data_dir or SHARED_DATA_DIR) / "perfsonar"
    lost = json.loads((folder / "packet_count_lost_data.json").read_text())
    sent = {r["ts"] // MINUTE_MS: r["val"] for r in json.loads((folder / "packet_count_sent_data.json").read_text())}
    path_id = str(lost[0]["path"][-1]).lower()[:12]
    shift = _day_ms(day) - (min(r["ts"] for r in lost) // MINUTE_MS) * MINUTE_MS
    documents = []
    for record in lost:
        packets = sent.get(record["ts"] // MINUTE_MS)
        if not record.get("is_valid", 1) or not packets:
            continue
        ts = record["ts"] + shift
        documents.append({
            "_id": f"esmond|{path_id}|{ts}",
            "timestamp": ts,
            "src_host": source,
            "dest_host": f"esmond-{path_id}.example.net",
            "src_site": "ESMOND",
            "dest_site": "ESMOND",
            "packet_loss": record["val"] / packets,
            "indexed_at": ts + INGEST_DELAY_MS,
        })
    return documents


def create_index(client, index: str, old_schema: bool = False) -> None:
    """New-schema indices get an explicit mapping; old ones are left to dynamic mapping (text +
    .keyword), as the 2017 network_weather indices were."""
    if not client.indices.exists(index=index):
        client.indices.create(index=index, body={} if old_schema else NEW_MAPPING)


def bulk_actions(index: str, documents: list[dict]) -> list[dict]:
    return [{"_index": index, "_id": d["_id"], "_source": {k: v for k, v in d.items() if k != "_id"}}
            for d in documents]


def index_documents(url: str, index: str, documents: list[dict], old_schema: bool = False) -> int:
    from opensearchpy import OpenSearch, helpers

    client = OpenSearch(hosts=[url], timeout=120)
    try:
        create_index(client, index, old_schema)
        indexed, _ = helpers.bulk(client, bulk_actions(index, documents), chunk_size=5000, max_chunk_bytes=50_000_000)
        client.indices.refresh(index=index)
    finally:
        client.close()
    return int(indexed)


@dataclass
class DemoCluster:
    server: Any  # osmem_server.OsmemServer; close() it when done
    url: str
    sources: list[str]
    partition_keys: list[str]
    simulation: Simulation
    # Run config per partition key: the real esmond path has ~30 usable minutes an hour (the other
    # half report lost > sent), so its hours are scored from a 10 h reference on.
    run_configs: dict[str, dict] = field(default_factory=dict)

    def close(self) -> None:
        self.server.close()


def start_demo_server_and_seed(
    day: dt.date, destinations: int = 12, seed: int = 0, export_env: bool = True, include_real: bool = True
) -> DemoCluster:
    """Start osmem-server and seed it: two simulated days (``day`` - 1 and ``day``, anomalies on
    ``day``) and, where ../shared/data is present, the real esmond path on ``day``. With
    ``export_env`` the URL goes into NETASSETS_ES_HOSTS for the perfsonar_search resource.
    Returns the cluster, the sources and the partition keys worth materialising."""
    from osmem_server import OsmemServer

    from netassets.perfsonar.search import HOSTS_ENV

    server = OsmemServer.start(japanese=False)
    sim = simulate(day - dt.timedelta(days=1), days=2, destinations=destinations, seed=seed)
    index_documents(server.url, "ps_packetloss-sim", sim.documents)
    # Where perfsonar_anomaly_scores looks for labels: the simulated days get an evaluation.
    sim.write_truth(landing_dir("perfsonar") / "ps_packetloss-sim.truth.json")
    sources = ["psb.example.org"]
    demo_configs: dict[str, dict] = {}
    keys = [f"{(day - dt.timedelta(days=1)).isoformat()}|psb.example.org", f"{day.isoformat()}|psb.example.org"]
    if include_real and (SHARED_DATA_DIR / "perfsonar").is_dir():
        index_documents(server.url, "ps_packetloss-esmond", real_documents(day))
        sources.append("esmond.example.org")
        keys.append(f"{day.isoformat()}|esmond.example.org")
        demo_configs[keys[-1]] = {"ops": {"perfsonar_anomaly_scores": {"config": {
            "min_reference_rows": 300, "min_subject_rows": 20}}}}
    if export_env:
        os.environ[HOSTS_ENV] = server.url
    return DemoCluster(server, server.url, sources, keys, sim, demo_configs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date.fromisoformat(sample_start()),
                        help="first simulated day (YYYY-MM-DD; NETASSETS_SAMPLE_START)")
    parser.add_argument("--days", type=int, default=2, help="number of days from --start")
    parser.add_argument("--source", default="psb.example.org", help="the measuring host (source) of every document")
    parser.add_argument("--destinations", type=int, default=20, help="destination hosts")
    parser.add_argument("--anomalies-per-day", type=int, default=4, help="injected packet-loss anomalies per day")
    parser.add_argument("--old-schema", action="store_true", help="src/dest fields as in the 2017 indices")
    parser.add_argument("--index", default="ps_packetloss-sim", help="index name the documents are written to")
    parser.add_argument("--out", type=Path, help="output folder (default: the perfsonar landing folder)")
    parser.add_argument("--url", help="also index the documents into this cluster")
    parser.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same files)")


def _without_credentials(url: str) -> str:
    """``url`` as it may be printed: without a ``user:password@``."""
    parts = urlsplit(url)
    if not parts.hostname:
        return "the cluster"
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


def generate(args: argparse.Namespace) -> None:
    if args.days < 1 or args.destinations < 1:
        raise ValueError("--days and --destinations must be at least 1")
    index = safe_name(args.index, "index").lower()
    sim = simulate(args.start, args.days, args.source, args.destinations, args.anomalies_per_day, args.seed,
                   args.old_schema)
    out = args.out or landing_dir("perfsonar")
    out.mkdir(parents=True, exist_ok=True)
    for path in (out / f"{index}.ndjson", out / f"{index}.truth.json"):
        if path.exists():
            raise FileExistsError(f"{path} exists; landing files are never overwritten")
    with (out / f"{index}.ndjson").open("x") as f:
        for action in bulk_actions(index, sim.documents):
            f.write(json.dumps({"index": {"_index": index, "_id": action["_id"]}}) + "\n")
            f.write(json.dumps(action["_source"]) + "\n")
    sim.write_truth(out / f"{index}.truth.json")
    print(f"wrote {len(sim.documents)} documents and {len(sim.anomalous_hours)} anomalous hours to {out}")
    if args.url:
        indexed = index_documents(args.url, index, sim.documents, args.old_schema)
        print(f"indexed {indexed} documents into {_without_credentials(args.url)}")
