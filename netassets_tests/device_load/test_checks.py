"""The gap check on a partition with a hole, and the raw asset on a bad landing file."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from netassets.core.settings import landing_dir
from netassets.defs.device_load.assets import device_load_raw
from netassets.defs.device_load.checks import raw_gaps
from netassets.device_load.landing import DeviceLoadInputError

from .helpers import hourly, materialize, write_csv

KEY = "2025-06-20|nl"
START = dt.datetime(2025, 6, 20)


def test_gap_is_reported_as_a_warning_and_does_not_block(netassets_home, warehouse, instance):
    rows = hourly("nl-a-01", "Gi0/1", START, [2.0] * 24, [1.0] * 24)
    write_csv(landing_dir("device_load") / "gappy.csv", rows[:5] + rows[9:])  # 05:00-08:00 missing: a 300-minute step to 09:00
    result = materialize([device_load_raw, raw_gaps], KEY, warehouse, instance)
    assert result.success  # a warning, not a blocking failure
    (gap,) = result.get_asset_check_evaluations()
    assert not gap.passed and gap.severity == dg.AssetCheckSeverity.WARN
    assert gap.metadata["rows_validated"].value == 19  # 20 rows, the first has no predecessor
    assert "gap_minutes" in gap.metadata["gx_results"].value and "[300" in gap.metadata["gx_results"].value


def test_bad_file_fails_the_run_and_keeps_the_previous_partition(netassets_home, warehouse, instance):
    folder = landing_dir("device_load")
    write_csv(folder / "good.csv", hourly("nl-a-01", "Gi0/1", START, [2.0] * 24, [1.0] * 24))
    assert materialize([device_load_raw], KEY, warehouse, instance).success
    write_csv(folder / "late.csv", hourly("nl-a-01", "Gi0/2", START, [3.0, -4.0], [1.0, 1.0]))
    with pytest.raises(DeviceLoadInputError, match="late.csv: line 3: max_metric_value is negative"):
        materialize([device_load_raw], KEY, warehouse, instance)
    assert warehouse.query("SELECT count(*) FROM device_load_raw").item() == 24
