"""DWCP fixtures: a small generated landing folder, tiny training settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from netassets.dwcp import sample

REGION = "us-east-1"
DAYS = ("2024-01-05", "2024-01-06")  # a Friday and a Saturday: the weekday and weekend factors
# One torchrun rank keeps the module fast on a shared 2-core box; the 2-rank gloo path is the
# same code with DistributedDataParallel and a rank's share of each epoch.
TINY_TRAINING = {"epochs": 2, "batch_size": 256, "lstm_sizes": [16, 8, 8], "dense_sizes": [8, 8, 8], "nproc": 1}


def generator_args(out: Path, **overrides) -> argparse.Namespace:
    values = {"days": 2, "start": DAYS[0], "regions": REGION, "links": 2, "missing_rate": 0.002, "seed": 7,
              "out": str(out), "overwrite": False}
    return argparse.Namespace(**{**values, **overrides})


@pytest.fixture
def landing(netassets_home: Path) -> Path:
    """Two days x one region x two links, with a few missing minutes, in the real landing folder."""
    root = netassets_home / "landing" / "dwcp"
    sample.generate(generator_args(root))
    return root
