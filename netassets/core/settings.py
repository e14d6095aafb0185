"""Where netassets keeps its state. Every environment variable the project reads is named here.

NETASSETS_HOME (default ``~/.netassets``) holds:
  warehouse.duckdb      the DuckDB warehouse
  landing/<pipeline>/   raw files dropped for ingestion (never modified)
  models/<pipeline>/    checkpoints, scalers, ONNX files, reports
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from pathlib import Path
from typing import Any

HOME_ENV = "NETASSETS_HOME"
# NETASSETS_<PIPELINE>_ROOT moves one pipeline's landing folder, e.g. NETASSETS_LENS_ROOT to
# the unpacked LENS download.
LANDING_ROOT_ENV = "NETASSETS_{}_ROOT"
# The first day every generator writes (`netassets generate <p> --start` defaults to it) and,
# unless NETASSETS_START_DATE moves it, the first day of the day axis: generated data falls on
# the axis's first days, not years down it.
SAMPLE_START_ENV = "NETASSETS_SAMPLE_START"
DEFAULT_SAMPLE_START = "2023-11-01"
START_DATE_ENV = "NETASSETS_START_DATE"
# A landing file modified less than this many seconds ago may still be being copied in.
LANDING_SETTLE_ENV = "NETASSETS_LANDING_SETTLE_SECONDS"
DEFAULT_LANDING_SETTLE_SECONDS = 30.0

# Repository root (editable install); SQL models live beside the package.
REPO_ROOT = Path(__file__).resolve().parents[2]
# The instance settings copied into a fresh DAGSTER_HOME (not in the repository root: see the file).
INSTANCE_SETTINGS = REPO_ROOT / "deploy" / "dagster.yaml"
SQL_DIR = Path(os.environ.get("NETASSETS_SQL_DIR", REPO_ROOT / "dbt_like_sql"))
SHARED_DATA_DIR = Path(os.environ.get("NETASSETS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def instance_setting(section: str) -> Any:
    """One section of INSTANCE_SETTINGS (``compute_logs``, ...), for instances made in code
    (``dg.instance_for_test(overrides=...)`` in tests and benchmarks) to run as deployments do."""
    import yaml

    return yaml.safe_load(INSTANCE_SETTINGS.read_text())[section]


def netassets_home() -> Path:
    raw = os.environ.get(HOME_ENV)
    if raw is not None and not raw.strip():
        raise ValueError(f"{HOME_ENV} is set but empty: unset it (~/.netassets) or name a folder")
    # Absolute: `dagster dev` and the demo's DAGSTER_HOME run from other working directories.
    return Path(raw or Path.home() / ".netassets").expanduser().resolve()


def warehouse_path() -> Path:
    return netassets_home() / "warehouse.duckdb"


def landing_dir(pipeline: str) -> Path:
    override = os.environ.get(LANDING_ROOT_ENV.format(safe_name(pipeline, "pipeline").upper()))
    return Path(override).expanduser() if override else netassets_home() / "landing" / pipeline


def artifacts_dir(pipeline: str) -> Path:
    return netassets_home() / "models" / safe_name(pipeline, "pipeline")


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}\Z")


def parse_day(text: str, what: str) -> dt.date:
    """A day written YYYY-MM-DD, and only so (Python 3.11's ``fromisoformat`` also takes 20231101
    and 2023-W44-3, which are no partition key); ValueError naming ``what`` otherwise."""
    try:
        if not isinstance(text, str) or not _DAY.match(text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a day written YYYY-MM-DD") from None


def sample_start() -> str:
    """The generators' default first day, YYYY-MM-DD (NETASSETS_SAMPLE_START, default 2023-11-01)."""
    return parse_day(os.environ.get(SAMPLE_START_ENV, DEFAULT_SAMPLE_START), SAMPLE_START_ENV).isoformat()


def start_date() -> str:
    """The first day of the day axis (NETASSETS_START_DATE, default ``sample_start()``)."""
    raw = os.environ.get(START_DATE_ENV)
    return parse_day(raw, START_DATE_ENV).isoformat() if raw else sample_start()


def landing_settle_seconds() -> float:
    raw = os.environ.get(LANDING_SETTLE_ENV, str(DEFAULT_LANDING_SETTLE_SECONDS))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < math.inf:
        raise ValueError(f"{LANDING_SETTLE_ENV}={raw!r}: expected a finite number of seconds >= 0")
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
