"""A throwaway PostgreSQL server from Debian's binaries, for tests, the scale benchmark and demos.

``initdb`` into a temporary folder, ``pg_ctl start`` on a free loopback port, ``stop`` at the end.
PostgreSQL refuses to run as root: under root the server runs as the ``postgres`` system user
(created by Debian's ``postgresql`` package), which then owns the data folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_ENV = "NETASSETS_PG_BIN"
_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


class PostgresBinariesMissing(RuntimeError):
    """initdb/pg_ctl not found: install Debian's ``postgresql`` package (.ci/run does)."""


def pg_bin_dir() -> Path:
    explicit = os.environ.get(PG_BIN_ENV)
    candidates = [explicit] if explicit else list(_CANDIDATES)
    which = shutil.which("pg_ctl")
    if which and not explicit:
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PostgresBinariesMissing(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found in {candidates}: "
        f"apt-get install postgresql (or set {PG_BIN_ENV})"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """``with PostgresServer() as pg:`` gives host, port, user, password and ``dsn(db)``."""

    user: str = "netassets"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    host: str = "127.0.0.1"
    port: int = 0
    root: Path | None = None
    _own_root: bool = False

    def __enter__(self) -> "PostgresServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def _as_server_user(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)

    def start(self) -> None:
        bin_dir = pg_bin_dir()
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="netassets-pg-"))
            self._own_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.port = self.port or free_port()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._as_server_user([str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                              "--pwfile", str(pwfile), "-A", "scram-sha-256", "--no-sync", "-E", "UTF8"])
        pwfile.unlink()
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.root} -c fsync=off -c max_connections=200"
        self._as_server_user([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-o", options,
                              "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"])

    def createdb(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')  # name: a fixed identifier chosen by the caller
        finally:
            conn.close()

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._as_server_user([str(pg_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"])
            except subprocess.CalledProcessError:
                pass
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def env(self, prefix: str = "NETASSETS_LAKE_PG_") -> dict[str, str]:
        return {f"{prefix}HOST": self.host, f"{prefix}PORT": str(self.port), f"{prefix}USER": self.user,
                f"{prefix}PASSWORD": self.password}


def wait_port(host: str, port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False
