"""`netassets generate dwcp`: determinism, per-link series, fixed start, the seed's distributions."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import polars as pl
import pytest

from netassets.cli import main
from netassets.dwcp import sample
from netassets.dwcp.schema import CATEGORIES, COLUMNS, read_raw_file

from .conftest import DAYS, REGION, generator_args


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_files_whatever_the_number_of_days(tmp_path):
    two = sample.generate(generator_args(tmp_path / "a"))
    one = sample.generate(generator_args(tmp_path / "b", days=1))
    other_seed = sample.generate(generator_args(tmp_path / "c", days=1, seed=8))
    assert _digest(two[0]) == _digest(one[0])
    assert _digest(two[0]) != _digest(other_seed[0])


def test_cli_writes_daily_files_per_region_in_the_landing_folder(netassets_home, capsys):
    assert main(["generate", "dwcp", "--days", "1", "--start", DAYS[0], "--regions", "eu-west-1,us-west-2",
                 "--links", "2"]) == 0
    root = netassets_home / "landing" / "dwcp"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.csv")) == [
        f"eu-west-1/{DAYS[0]}.csv", f"us-west-2/{DAYS[0]}.csv"]
    # Raw files are never overwritten by accident.
    assert main(["generate", "dwcp", "--days", "1", "--start", DAYS[0], "--regions", "eu-west-1"]) == 2
    assert "exists" in capsys.readouterr().err


def test_links_keep_their_identity_and_the_series_starts_at_start(tmp_path):
    path = sample.generate(generator_args(tmp_path, days=1, missing_rate=0.0))[0]
    frame, _ = read_raw_file(path, REGION, dt.date.fromisoformat(DAYS[0]))
    assert list(frame.columns) == list(COLUMNS)  # the guide's 20 columns, in order
    per_link = frame.group_by("node_id", "peer_id").agg(
        pl.struct("az", *CATEGORIES).n_unique().alias("variants"), pl.len(), pl.col("timestamp").min().alias("first"),
        pl.col("timestamp").diff().drop_nulls().unique().alias("steps"))
    assert per_link.height == 2
    assert per_link["variants"].to_list() == [1, 1]
    assert per_link["len"].to_list() == [1440, 1440]
    midnight = int(dt.datetime.fromisoformat(DAYS[0]).replace(tzinfo=dt.timezone.utc).timestamp())
    assert per_link["first"].to_list() == [midnight, midnight]
    assert [s.to_list() for s in per_link["steps"]] == [[60], [60]]


def test_numeric_columns_follow_the_seeds_formulas(tmp_path):
    path = sample.generate(generator_args(tmp_path, days=1, links=3, missing_rate=0.0))[0]
    frame, _ = read_raw_file(path, REGION, dt.date.fromisoformat(DAYS[0]))  # a Friday
    noon = frame.filter(pl.col("time_of_day") == 12)["throughput_mbps"]
    # (500 + 200 sin(pi)) * 1.5 = 750 in business hours, noise N(0, 50): 180 draws.
    assert abs(noon.mean() - 750) < 15 and 35 < noon.std() < 65
    assert frame["throughput_mbps"].min() >= 10 and frame["throughput_mbps"].max() <= 1000
    assert frame["packet_loss"].is_between(0, 0.1).all()
    assert frame["jitter_ms"].is_between(0.1, 20).all()


def test_oracle_is_the_conditional_mean_of_the_generator(tmp_path):
    path = sample.generate(generator_args(tmp_path, days=1, links=3, missing_rate=0.0))[0]
    frame, _ = read_raw_file(path, REGION, dt.date.fromisoformat(DAYS[0]))
    oracle = sample.expected_targets(frame["timestamp"].to_numpy())
    residual = frame["throughput_mbps"].to_numpy() - oracle[:, 0]
    assert abs(residual.mean()) < 5 and 40 < residual.std() < 60  # only the N(0, 50) noise is left
    saturday = sample.expected_targets(np.array([int(dt.datetime(2024, 1, 6, 12, tzinfo=dt.timezone.utc).timestamp())]))
    assert saturday[0, 0] == pytest.approx(750 * 0.7, abs=3)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="region"):
        sample.generate(generator_args(tmp_path, regions="../etc"))
    with pytest.raises(ValueError, match="missing-rate"):
        sample.generate(generator_args(tmp_path, missing_rate=1.0))


def test_generated_files_carry_a_sidecar_that_a_changed_file_no_longer_matches(tmp_path):
    path = sample.generate(generator_args(tmp_path, days=1))[0]
    assert sample.sidecar(path).name == f"{DAYS[0]}.generator.json" and sample.is_generated(path)
    path.write_text(path.read_text().replace(",", ";", 1))  # someone edited (or replaced) the data
    assert not sample.is_generated(path)
    assert not sample.is_generated(tmp_path / "elsewhere.csv")
