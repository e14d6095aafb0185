"""A real osmem-server (OpenSearch-compatible) seeded once per session; each test gets a clone.

Base cluster (frozen after seeding):
  ps_packetloss-sim     new schema, psb.example.org -> 4 destinations, DAY-1 12:00 .. DAY 07:00,
                        one injected anomalous hour (DAY 05:00), plus four broken documents on DAY
  ps_packetloss-old     old schema (src/dest, dynamic mapping), 192.0.2.10 -> 3 destinations, DAY 10:00-11:00
  ps_packetloss-esmond  the real esmond path on DAY (only where ../shared/data is present)
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import socket
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from osmem_server import OsmemServer

from netassets.core.settings import SHARED_DATA_DIR
from netassets.defs.perfsonar.resources import PerfsonarSearch
from netassets.perfsonar.sample import Simulation, index_documents, real_documents, simulate

DAY = dt.date(2024, 3, 10)
SIM_SOURCE = "psb.example.org"
OLD_SOURCE = "192.0.2.10"
REAL_SOURCE = "esmond.example.org"
ANOMALY_HOUR = 5


def _ms(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


WINDOW = (_ms(dt.datetime.combine(DAY - dt.timedelta(days=1), dt.time(12))), _ms(dt.datetime.combine(DAY, dt.time(7))))
BROKEN = [  # one per skip reason the loader must count
    {"_id": "broken-no-loss", "timestamp": _ms(dt.datetime.combine(DAY, dt.time(1, 2))), "src_host": SIM_SOURCE, "dest_host": "ps00.site0.example.net", "indexed_at": 1},
    {"_id": "broken-text-loss", "timestamp": _ms(dt.datetime.combine(DAY, dt.time(1, 3))), "src_host": SIM_SOURCE, "dest_host": "ps00.site0.example.net", "packet_loss": "n/a", "indexed_at": 1},
    {"_id": "broken-big-loss", "timestamp": _ms(dt.datetime.combine(DAY, dt.time(1, 4))), "src_host": SIM_SOURCE, "dest_host": "ps00.site0.example.net", "packet_loss": 1.5, "indexed_at": 1},
    {"_id": "broken-no-dest", "timestamp": _ms(dt.datetime.combine(DAY, dt.time(1, 5))), "src_host": SIM_SOURCE, "packet_loss": 0.0, "indexed_at": 1},
]


@dataclass
class Seeded:
    server: OsmemServer
    sim: Simulation  # documents as indexed (window applied)
    old: list[dict]
    real: list[dict]


@pytest.fixture(scope="session")
def seeded_cluster():
    server = OsmemServer.start(japanese=False)
    sim = simulate(DAY - dt.timedelta(days=1), days=2, source=SIM_SOURCE, destinations=4, seed=3,
                   anomaly_hours=[ANOMALY_HOUR])
    sim.documents = [d for d in sim.documents if WINDOW[0] <= d["timestamp"] < WINDOW[1]]
    index_documents(server.url, "ps_packetloss-sim", sim.documents + BROKEN)
    old_start = _ms(dt.datetime.combine(DAY, dt.time(10)))
    old = [d for d in simulate(DAY, days=1, source=OLD_SOURCE, destinations=3, seed=4, old_schema=True).documents
           if old_start <= d["timestamp"] < old_start + 3_600_000]
    index_documents(server.url, "ps_packetloss-old", old, old_schema=True)
    real = real_documents(DAY, REAL_SOURCE) if (SHARED_DATA_DIR / "perfsonar").is_dir() else []
    if real:
        index_documents(server.url, "ps_packetloss-esmond", real)
    server.freeze()
    yield Seeded(server, sim, old, real)
    server.close()


@pytest.fixture
def search_url(seeded_cluster):
    with seeded_cluster.server.clone() as clone:
        yield clone.url


def make_search(url: str, **overrides) -> PerfsonarSearch:
    return PerfsonarSearch(**{"hosts": url, "settle_seconds": 0, "timeout_seconds": 10, "max_retries": 0, **overrides})


@pytest.fixture
def search(search_url) -> PerfsonarSearch:
    return make_search(search_url)


@pytest.fixture
def closed_port_url() -> str:
    """A URL nobody listens on: a real refused connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class _Proxy(http.server.ThreadingHTTPServer):
    """A small reverse proxy in front of the real cluster: basic auth if ``expected`` is set, and a
    cluster that goes away (connections dropped unanswered) after ``answered_limit`` requests."""

    daemon_threads = True

    def __init__(self, target: str, expected: str | None = None, answered_limit: int | None = None):
        self.target, self.expected, self.answered_limit, self.answered = target, expected, answered_limit, 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
        if self.server.answered_limit is not None and self.server.answered >= self.server.answered_limit:
            self.close_connection = True  # the cluster is gone: the connection drops with no answer
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.server.answered += 1
        if self.server.expected is not None and self.headers.get("Authorization") != self.server.expected:
            payload = json.dumps({"error": {"type": "security_exception", "reason": "unable to authenticate user"},
                                  "status": 401}).encode()
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="security"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        request = urllib.request.Request(self.server.target + self.path, data=body, method=self.command,
                                         headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


@pytest.fixture
def auth_proxy(search_url):
    """osmem-server cannot enforce authentication, so the cluster sits behind a small basic-auth
    reverse proxy (the usual nginx-in-front deployment): a real HTTP 401 for wrong credentials,
    the real cluster behind it for right ones. Yields (url, user, password)."""
    user, password = "ps-reader", "s3cr3t-Qv8mZt1x-never-log-me"
    with _serve(_Proxy(search_url, expected=_basic(user, password))) as url:
        yield url, user, password


@contextmanager
def _serve(proxy: _Proxy):
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def failing_cluster(search_url):
    """The real cluster behind a proxy that answers ``n`` requests, then drops every connection:
    a cluster going down in the middle of a paged read. Call with n, get the URL."""
    proxies = []

    def start(answered_limit: int) -> str:
        manager = _serve(_Proxy(search_url, answered_limit=answered_limit))
        proxies.append(manager)
        return manager.__enter__()

    yield start
    for manager in proxies:
        manager.__exit__(None, None, None)
