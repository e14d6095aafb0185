"""The Dagster UI in a real browser (Debian's Chromium driven by Playwright) against `dagster dev`.

Launches one LENS partition of lens_ingest_job (lens_ingest, which writes lens_raw_irtt and
lens_clean_groups in one transaction, and lens_group_features, with their GX checks) through GraphQL, then follows it in the UI: the asset graph with every group of the
project, the partitioned asset, the run, and the check results on the asset's Checks tab.
Screenshots land in netassets_tests/artifacts/ui/.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from netassets_tests.ui.dagster_dev import LENS_CHECKS, LensDev

PARTITION = "2023-11-01|chicago"
UI_TIMEOUT_MS = 60_000  # the first page load compiles the asset graph of ~40 assets on a busy machine


def project_groups() -> list[str]:
    from netassets.definitions import defs

    return sorted({spec.group_name for spec in defs.resolve_all_asset_specs() if spec.group_name})


def shot(page: Page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=False)


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=re.compile(rf"^{name}")).first.click()


@pytest.fixture
def page(browser, artifacts, request):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    try:
        yield page
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            try:
                shot(page, artifacts, f"FAILED_{request.node.name}")
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        context.close()


def test_ui_graph_partition_run_and_checks(browser, page: Page, dagster_dev: LensDev, artifacts) -> None:
    started = time.monotonic()
    groups = project_groups()
    assert "lens" in groups and len(groups) >= 2, f"unexpected asset groups in netassets.definitions: {groups}"

    # Launch first: the run's steps start their processes while the browser looks around.
    run_id = dagster_dev.launch_partition_run("lens_ingest_job", PARTITION)

    # 1. The global asset graph shows every group of the project.
    page.goto(f"{dagster_dev.url}/asset-groups")
    for group in groups:
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    shot(page, artifacts, "01_asset_graph")
    # ... and a group's own graph shows its assets (the global view collapses groups).
    page.goto(f"{dagster_dev.url}/locations/{dagster_dev.location}/asset-groups/lens")
    for asset in ("lens_raw_irtt", "lens_clean_groups"):
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    shot(page, artifacts, "01_lens_group_graph")

    # 2. A partitioned asset: its Partitions tab lists the registered regions (the dynamic dimension).
    page.goto(f"{dagster_dev.url}/assets/lens_clean_groups")
    expect(page.get_by_text("Seed-faithful cleaning", exact=False)).to_be_visible()
    open_tab(page, "Partitions")
    for region in ("chicago", "ottawa"):
        expect(page.get_by_text(region, exact=True).first).to_be_visible()
    shot(page, artifacts, "02_partitions")

    # 3. The launched run, in the UI, for our partition.
    page.goto(f"{dagster_dev.url}/runs/{run_id}")
    expect(page.get_by_text("lens_ingest_job").first).to_be_visible()
    expect(page.get_by_text(PARTITION).first).to_be_visible()
    shot(page, artifacts, "03_run_launched")

    status = dagster_dev.wait_run(run_id, timeout_s=240)
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{dagster_dev.log_tail()}"
    page.reload()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    # all three steps succeeded: lens_ingest (raw + clean in one transaction, their two GX suites
    # evaluated in the step), lens_group_features and its finite_features check
    expect(page.get_by_text(re.compile(r"^Succeeded \(3\)$"))).to_be_visible()
    shot(page, artifacts, "04_run_success")

    # 4. Check results on each asset's Checks tab: passed, for this partition, from this run.
    for asset, check in (("lens_raw_irtt", LENS_CHECKS[0]), ("lens_clean_groups", LENS_CHECKS[1])):
        executions = [e for e in dagster_dev.check_executions(asset, check, PARTITION) if e["runId"] == run_id]
        assert executions and executions[0]["evaluation"]["success"] is True, (asset, check, executions)

        page.goto(f"{dagster_dev.url}/assets/{asset}")
        open_tab(page, "Checks")
        expect(page.get_by_text(check, exact=True).first).to_be_visible()
        expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
        expect(page.get_by_text(PARTITION, exact=True).first).to_be_visible()
        shot(page, artifacts, f"05_checks_{asset}")

    elapsed = time.monotonic() - started
    print(f"UI test: server ready in {dagster_dev.started_s:.0f} s, test body {elapsed:.0f} s")
