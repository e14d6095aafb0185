"""A partition writer SIGKILLed inside its transaction, for either warehouse backend.

The writer is a real process: it deletes the partition's old rows, inserts 50,000 new ones,
writes a marker file and sleeps before COMMIT; the test waits for the marker, so the kill
lands inside the transaction every time (not a race), and the kill itself is real.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl

from netassets.core.warehouse import DuckDBWarehouse

WRITER = textwrap.dedent(
    """
    import sys, time, datetime as dt
    from pathlib import Path
    import polars as pl
    from netassets.core.warehouse import DuckDBWarehouse

    marker, day, database = Path(sys.argv[1]), dt.date.fromisoformat(sys.argv[2]), sys.argv[3]
    rows = pl.DataFrame({"day": [day] * 50_000, "region": ["chicago"] * 50_000, "value": [2.0] * 50_000})

    def hang_inside_transaction(conn):
        marker.write_text("in transaction")
        time.sleep(60)

    DuckDBWarehouse(database=database).replace_partition(
        "kill_test", {"day": day, "region": "chicago"}, data=rows, before_commit=hang_inside_transaction)
    """
)


def write_previous_versions(warehouse: DuckDBWarehouse, day: dt.date) -> None:
    """chicago: 1000 rows of 1.0, the partition the writer will be killed replacing; ottawa: 10 of 5.0."""
    for region, rows, value in (("chicago", 1000, 1.0), ("ottawa", 10, 5.0)):
        warehouse.replace_partition("kill_test", {"day": day, "region": region},
                                    data=pl.DataFrame({"day": [day] * rows, "region": [region] * rows, "value": [value] * rows}))


def kill_writer_inside_its_transaction(tmp_path: Path, day: dt.date, database: str = "") -> None:
    """Start the writer (on ``database``, or the backend the environment names), SIGKILL it inside its transaction."""
    marker = tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(marker), day.isoformat(), database], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "writer exited before reaching its transaction"
            assert time.monotonic() < deadline, "writer never reached its transaction"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()


def assert_previous_versions_kept_and_rerun_works(warehouse: DuckDBWarehouse, day: dt.date, record_property) -> None:
    summary = warehouse.query("SELECT region, count(*) AS n, sum(value) AS total FROM kill_test GROUP BY region ORDER BY region")
    record_property("rows_lost", 1010 - int(summary["n"].sum()))
    assert summary.rows() == [("chicago", 1000, 1000.0), ("ottawa", 10, 50.0)]
    rerun = pl.DataFrame({"day": [day] * 7, "region": ["chicago"] * 7, "value": [3.0] * 7})
    assert warehouse.replace_partition("kill_test", {"day": day, "region": "chicago"}, data=rerun).rows == 7
    assert warehouse.query("SELECT count(*) FROM kill_test WHERE region = 'chicago'").item() == 7
