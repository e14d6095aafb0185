"""A multi-run backfill of 2 days x 2 regions of LENS through `dagster dev` (GraphQL + its daemon).

Asserts one run per partition, every run succeeded, both assets materialised every partition
from the backfill's own runs, and both GX checks passed on every partition.
"""

from __future__ import annotations

import time

from netassets_tests.ui.dagster_dev import (
    LENS_ASSETS,
    LENS_CHECKS,
    TEST_DAYS,
    TEST_REGIONS,
    LensDev,
    partition_keys,
)

PARTITIONS = partition_keys(TEST_DAYS, TEST_REGIONS)


def test_multi_run_backfill_of_lens_partitions(dagster_dev: LensDev) -> None:
    assert len(PARTITIONS) == 4 and len(set(PARTITIONS)) == 4
    started = time.monotonic()
    backfill_id = dagster_dev.launch_backfill(PARTITIONS, assets=LENS_ASSETS)
    status, runs = dagster_dev.wait_backfill(backfill_id, expected_runs=len(PARTITIONS), timeout_s=420)
    elapsed = time.monotonic() - started

    # Multi-run: the daemon launched exactly one run per partition, and each succeeded.
    assert sorted(r["partition"] for r in runs) == sorted(PARTITIONS), runs
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    assert not failed, f"backfill {backfill_id} runs not successful: {failed}\n{dagster_dev.log_tail()}"
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), f"backfill {backfill_id} ended {status}"

    run_of = {r["partition"]: r["runId"] for r in runs}
    for asset in LENS_ASSETS:
        events = dagster_dev.materializations(asset, PARTITIONS)
        from_backfill = {e["partition"] for e in events if run_of.get(e["partition"]) == e["runId"]}
        assert from_backfill == set(PARTITIONS), f"{asset} materialised by the backfill: {sorted(from_backfill)}"
    for asset, check in zip(LENS_ASSETS, LENS_CHECKS):
        for partition in PARTITIONS:
            executions = [e for e in dagster_dev.check_executions(asset, check, partition) if e["runId"] == run_of[partition]]
            assert executions and executions[0]["evaluation"]["success"] is True, (check, partition, executions)

    durations = sorted(r["endTime"] - r["startTime"] for r in runs)
    print(f"backfill of {len(PARTITIONS)} partitions: {elapsed:.0f} s wall; run durations {[round(d) for d in durations]} s")
