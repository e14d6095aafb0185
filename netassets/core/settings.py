"""Where netassets keeps its state. Every environment variable the project reads is named here.

NETASSETS_HOME (default ``~/.netassets``) holds:
  warehouse.duckdb      the DuckDB warehouse
  landing/<pipeline>/   raw files dropped for ingestion (never modified)
  models/<pipeline>/    checkpoints, scalers, ONNX files, reports
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PIPELINES = ("lens", "device_load", "dwcp", "perfsonar", "traffic")

HOME_ENV = "NETASSETS_HOME"
LENS_ROOT_ENV = "NETASSETS_LENS_ROOT"
START_DATE_ENV = "NETASSETS_START_DATE"
DEFAULT_START_DATE = "2023-01-01"
# A landing file modified less than this many seconds ago may still be being copied in.
LANDING_SETTLE_ENV = "NETASSETS_LANDING_SETTLE_SECONDS"
DEFAULT_LANDING_SETTLE_SECONDS = 30.0

# Repository root (editable install); SQL models live beside the package.
REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = Path(os.environ.get("NETASSETS_SQL_DIR", REPO_ROOT / "dbt_like_sql"))
SHARED_DATA_DIR = Path(os.environ.get("NETASSETS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def netassets_home() -> Path:
    return Path(os.environ.get(HOME_ENV, Path.home() / ".netassets")).expanduser()


def warehouse_path() -> Path:
    return netassets_home() / "warehouse.duckdb"


def landing_dir(pipeline: str) -> Path:
    if pipeline == "lens" and os.environ.get(LENS_ROOT_ENV):
        return Path(os.environ[LENS_ROOT_ENV]).expanduser()
    return netassets_home() / "landing" / _checked_pipeline(pipeline)


def artifacts_dir(pipeline: str) -> Path:
    return netassets_home() / "models" / _checked_pipeline(pipeline)


def start_date() -> str:
    return os.environ.get(START_DATE_ENV, DEFAULT_START_DATE)


def landing_settle_seconds() -> float:
    raw = os.environ.get(LANDING_SETTLE_ENV, str(DEFAULT_LANDING_SETTLE_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{LANDING_SETTLE_ENV}={raw!r}: expected a number of seconds >= 0")
    return value


def safe_name(value: str, what: str = "name") -> str:
    """A value that will become part of a path or a partition key: letters, digits, . _ - only.

    Rejects '..', '/', quotes and whitespace before they reach SQL or the filesystem.
    """
    if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
        raise ValueError(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _checked_pipeline(pipeline: str) -> str:
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {PIPELINES}")
    return pipeline
