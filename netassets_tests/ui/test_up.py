"""`netassets up` end to end: one real session (the demo for all five pipelines, `dagster dev`
with its daemon, perfSONAR's osmem-server) serves every test here, in file order:

1. the demo's results, read from the instance under NETASSETS_HOME: every pipeline ran, every
   table materialisation carries catalog metadata, every model verdict is a check, every plot
   is a PNG file linked by path; the `dagster dev` log is free of instance and beta warnings;
2. the UI in headless Chromium: the five groups, one partition launched from the asset page,
   a two-partition multi-run backfill launched from the same dialog, a sensor started, a model's
   verdict check (screenshots in netassets_tests/artifacts/ui/);
3. run monitoring: a run SIGKILLed while its step holds the single duckdb pool slot does not
   block the next run that needs the pool;
4. SIGTERM to `netassets up` stops every process it started (last: it ends the session).
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import re
import signal
import time

import dagster as dg
import pytest
from playwright.sync_api import Page, expect

from netassets.core.run_launcher import PID_TAG
from netassets.devserver import TERMINAL
from netassets.pipelines import all_pipelines, pipeline
from netassets_tests.ui.conftest import NetassetsUp, command_line, descendants

GROUPS = {"lens", "device_load", "dwcp", "traffic", "perfsonar"}
CATALOG_KEYS = ("dagster/row_count", "dagster/table_name", "dagster/column_schema")
VERDICT_CHECK = "beats_strongest_baseline"
UI_PARTITION = ("2023-11-01", "chicago")
UI_BACKFILL = (("2023-11-02", "2023-11-03"), "ottawa")
UI_ASSETS = ("lens_raw_irtt", "lens_clean_groups")  # one multi-asset step, lens_ingest, writes both
SENSOR = "device_load_landing_sensor"
UI_TIMEOUT_MS = 60_000  # the first page load compiles the asset graph of ~40 assets on a busy machine
IN_PROGRESS = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]


@pytest.fixture(scope="module")
def instance(netassets_up: NetassetsUp):
    with dg.DagsterInstance.from_config(str(netassets_up.dagster_home)) as instance:
        yield instance


# ---- 1. the demo `netassets up` ran -------------------------------------------------------------

def test_up_ran_every_pipeline_then_printed_the_url(netassets_up: NetassetsUp) -> None:
    out = netassets_up.stdout()
    lines = out.splitlines()
    for described in all_pipelines():
        summary = [line for line in lines if line.startswith(f"{described.name} ")]
        assert summary and " ok " in summary[-1], (described.name, out[-3000:])
        stage_lines = [line for line in lines if line.startswith(f"[{described.name}] ") and " runs " in line]
        assert len(stage_lines) == len(described.demo_stages), stage_lines
    # the terminal shows the demo's own lines, not Dagster's event stream (that goes to a file)
    assert "DEBUG" not in out and len(lines) < 80, out[:3000]
    events = netassets_up.home / "demo-events.log"
    assert events.is_file() and "STEP_SUCCESS" in events.read_text()
    assert str(events) in out and "model vs strongest baseline" in out
    print(f"netassets up: UI populated {netassets_up.ready_s:.0f} s after start")


def test_every_table_materialisation_carries_catalog_metadata(instance) -> None:
    from netassets.definitions import defs

    tables = [spec.key for spec in defs.resolve_all_asset_specs() if "duckdb" in spec.kinds]
    assert len(tables) >= 10, tables
    problems = []
    for key in tables:
        records = instance.fetch_materializations(key, limit=1000).records
        if not records:
            problems.append(f"{key.to_user_string()}: never materialised by the demo")
        for record in records:
            metadata = record.asset_materialization.metadata
            missing = [k for k in CATALOG_KEYS if k not in metadata]
            if missing:
                problems.append(f"{key.to_user_string()} {record.partition_key}: missing {missing}")
            elif not metadata["dagster/column_schema"].value.columns:
                problems.append(f"{key.to_user_string()}: empty column schema")
    assert not problems, problems


def test_verdicts_are_shown_as_checks(instance) -> None:
    from netassets.definitions import defs

    verdict_checks = [key for key in defs.resolve_asset_graph().asset_check_keys if key.name == VERDICT_CHECK]
    assert len(verdict_checks) >= 4, verdict_checks
    missing = [key.asset_key.to_user_string() for key in verdict_checks
               if not instance.event_log_storage.get_asset_check_execution_history(key, limit=1)]
    assert not missing, missing


def _unrounded_floats(value, where: str):
    if isinstance(value, float) and math.isfinite(value) and float(f"{value:.4g}") != value:
        yield f"{where} = {value!r}"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _unrounded_floats(item, f"{where}.{key}")
    elif type(value) in (list, tuple):
        for index, item in enumerate(value):
            yield from _unrounded_floats(item, f"{where}[{index}]")
    elif isinstance(value, dg.TableMetadataValue):
        for index, record in enumerate(value.records):
            yield from _unrounded_floats(dict(record.data), f"{where}[{index}]")
    elif isinstance(value, (dg.FloatMetadataValue, dg.JsonMetadataValue)):
        yield from _unrounded_floats(value.value, where)


def test_every_metadata_float_is_shown_to_four_significant_digits(instance) -> None:
    """No materialisation or check of the demo shows a float with more than four significant
    digits (core.metadata.shown), in a float, JSON or table entry."""
    from netassets.definitions import defs

    graph = defs.resolve_asset_graph()
    problems, floats = [], 0
    for key in graph.get_all_asset_keys():
        for record in instance.fetch_materializations(key, limit=1000).records:
            for name, value in record.asset_materialization.metadata.items():
                floats += isinstance(value, dg.FloatMetadataValue)
                problems += _unrounded_floats(value, f"{key.to_user_string()} {name}")
    for check in graph.asset_check_keys:
        for execution in instance.event_log_storage.get_asset_check_execution_history(check, limit=1000):
            if execution.event is None or execution.event.dagster_event is None:
                continue
            evaluation = execution.event.dagster_event.event_specific_data
            for name, value in (getattr(evaluation, "metadata", None) or {}).items():
                problems += _unrounded_floats(value, f"{check.to_user_string()} {name}")
    assert floats >= 20, floats  # the scan saw the demo's figures
    assert not problems, sorted(set(problems))[:40]

def test_every_plot_is_a_png_file_linked_by_path(instance) -> None:
    """Each inline plot of every pipeline's materialisations has a ``<name>_path`` entry whose file
    holds exactly the inlined PNG."""
    from netassets.definitions import defs

    pipelines_with_plots, problems = set(), []
    for spec in defs.resolve_all_asset_specs():
        for record in instance.fetch_materializations(spec.key, limit=1000).records:
            metadata = record.asset_materialization.metadata
            for name, value in metadata.items():
                if not (isinstance(value, dg.MarkdownMetadataValue) and value.md_str.startswith("![plot](data:image/png;base64,")):
                    continue
                pipelines_with_plots.add(spec.group_name)
                link = metadata.get(f"{name}_path")
                if not isinstance(link, dg.PathMetadataValue):
                    problems.append(f"{spec.key.to_user_string()} {name}: no {name}_path entry")
                    continue
                png = base64.b64decode(value.md_str.split(",", 1)[1].rstrip(")"))
                if not os.path.isfile(link.path):
                    problems.append(f"{spec.key.to_user_string()} {name}: {link.path} missing")
                elif open(link.path, "rb").read() != png or not png.startswith(b"\x89PNG\r\n\x1a\n"):
                    problems.append(f"{spec.key.to_user_string()} {name}: {link.path} is not the inlined PNG")
    assert not problems, problems
    assert pipelines_with_plots == GROUPS, pipelines_with_plots


def test_dagster_dev_log_has_no_instance_or_beta_warnings(netassets_up: NetassetsUp) -> None:
    log = netassets_up.log_path.read_text(errors="replace")
    assert "Found a dagster instance configuration" not in log  # a dagster.yaml beside the cwd, ignored
    assert "does not match the name" not in log  # pyproject's code location name vs the one registered
    noisy = [line for line in log.splitlines() if "PreviewWarning" in line or "BetaWarning" in line]
    assert len(noisy) <= 2, noisy[:5]


# ---- 2. the UI, in a browser --------------------------------------------------------------------

def shot(page: Page, artifacts, name: str) -> None:
    page.screenshot(path=str(artifacts / f"up_{name}.png"), full_page=False)


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


def open_materialize_dialog(page: Page, url: str, days: str, region: str):
    """The asset page's Materialize dialog for lens_clean_groups, with these days and one region."""
    page.goto(f"{url}/assets/lens_clean_groups")
    expect(page.get_by_text("Seed-faithful cleaning").first).to_be_visible()
    button = page.get_by_role("button", name=re.compile("Materialize"))
    expect(button.first).to_be_enabled()
    button.first.click()
    # lens_ingest writes lens_raw_irtt too: the UI says so and asks to confirm. A Confirm clicked
    # while the button is still loading the launch data can be lost (seen once in a full run, the
    # confirmation still up a minute later): confirm until the partition dialog opens.
    expect(page.get_by_text("lens_raw_irtt").first).to_be_visible()
    dialog = page.get_by_role("dialog")
    day = dialog.get_by_placeholder(re.compile("^ex: "))
    deadline = time.monotonic() + 60
    while not day.is_visible():
        assert time.monotonic() < deadline, "the partition dialog did not open after Confirm"
        confirm = page.get_by_role("button", name="Confirm")
        if confirm.is_visible():
            confirm.click()
        page.wait_for_timeout(1000)
    day.fill(days)
    day.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name=re.compile(f"^{region}")).click()
    page.keyboard.press("Escape")  # closes the region menu, not the dialog
    return dialog


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} after {timeout_s:.0f} s"
        time.sleep(1.0)


def runs_in_progress(up: NetassetsUp) -> list[str]:
    data = up.graphql('query($s: [RunStatus!]) { runsOrError(filter: {statuses: $s}) { ... on Runs { results { runId } } } }',
                      {"s": IN_PROGRESS})
    return [r["runId"] for r in data["runsOrError"]["results"]]


def runs_of_partition(up: NetassetsUp, partition: str) -> list[str]:
    data = up.graphql('query($p: String!) { runsOrError(filter: {tags: [{key: "dagster/partition", value: $p}]}) '
                      '{ ... on Runs { results { runId } } } }', {"p": partition})
    return [r["runId"] for r in data["runsOrError"]["results"]]


def latest_backfill_id(up: NetassetsUp) -> str | None:
    data = up.graphql("{ partitionBackfillsOrError(limit: 1) { ... on PartitionBackfills { results { id } } } }")
    results = data["partitionBackfillsOrError"]["results"]
    return results[0]["id"] if results else None


def sensor_state(up: NetassetsUp, name: str) -> dict:
    data = up.graphql(
        """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename
             ... on Sensor { sensorState { status ticks(limit: 5) { status runIds } } } } }""",
        {"s": {"repositoryLocationName": up.location, "repositoryName": "__repository__", "sensorName": name}})
    return data["sensorOrError"]["sensorState"]


def assert_checks_passed(up: NetassetsUp, run_of: dict[str, str]) -> None:
    for asset in UI_ASSETS:
        for partition, run_id in run_of.items():
            executions = [e for e in up.check_executions(asset, "gx_expectations", partition) if e["runId"] == run_id]
            assert executions and executions[0]["evaluation"]["success"] is True, (asset, partition, executions)


def test_ui_walk(netassets_up: NetassetsUp, page: Page, artifacts) -> None:
    up, started = netassets_up, time.monotonic()

    # The asset graph shows the five pipelines' groups; a group's graph shows its assets.
    page.goto(f"{up.url}/asset-groups")
    for group in sorted(GROUPS):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    shot(page, artifacts, "01_asset_groups")
    page.goto(f"{up.url}/locations/{up.location}/asset-groups/lens")
    for asset in UI_ASSETS:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    shot(page, artifacts, "02_lens_group")

    # A sensor, started with its switch; the daemon ticks it while the runs below go on.
    page.goto(f"{up.url}/locations/{up.location}/sensors/{SENSOR}")
    switch = page.get_by_role("checkbox")
    expect(switch).not_to_be_checked()
    page.locator("label", has=switch).click()  # the input itself is hidden under the drawn switch
    expect(switch).to_be_checked()
    wait_for(lambda: sensor_state(up, SENSOR)["status"] == "RUNNING", 30, f"{SENSOR} not running")
    shot(page, artifacts, "03_sensor_started")

    # One partition, launched from the asset's Materialize dialog; followed to its run page.
    day, region = UI_PARTITION
    partition = f"{day}|{region}"
    dialog = open_materialize_dialog(page, up.url, day, region)
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    shot(page, artifacts, "04_launch_one_partition")
    before = set(runs_of_partition(up, partition))
    dialog.get_by_role("button", name="Launch 1 run").click()
    wait_for(lambda: set(runs_of_partition(up, partition)) - before, 30, "the dialog launched no run")
    [run_id] = set(runs_of_partition(up, partition)) - before
    page.goto(f"{up.url}/runs/{run_id}")
    expect(page.get_by_text(partition).first).to_be_visible()
    status = up.wait_run(run_id, timeout_s=240)
    assert status == "SUCCESS", f"run {run_id} ended {status}:\n{up.log_tail()}"
    page.reload()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    shot(page, artifacts, "05_run_success")
    assert_checks_passed(up, {partition: run_id})
    page.goto(f"{up.url}/assets/lens_clean_groups?view=checks")
    expect(page.get_by_text("gx_expectations", exact=True).first).to_be_visible()
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible()
    shot(page, artifacts, "06_checks")

    # Two partitions as a multi-run backfill from the same dialog: one run each, all succeed.
    days, region = UI_BACKFILL
    partitions = sorted(f"{d}|{region}" for d in days)
    before = latest_backfill_id(up)
    dialog = open_materialize_dialog(page, up.url, ", ".join(days), region)
    expect(dialog.get_by_text("2 partitions", exact=True)).to_be_visible()
    shot(page, artifacts, "07_launch_backfill")
    dialog.get_by_role("button", name="Launch backfill").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    backfill_id = latest_backfill_id(up)
    assert backfill_id and backfill_id != before, "the dialog created no backfill"
    status, runs = up.wait_backfill(backfill_id, expected_runs=len(partitions), timeout_s=300)
    assert sorted(r["partition"] for r in runs) == partitions, runs
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    assert not failed, f"backfill {backfill_id} runs not successful: {failed}\n{up.log_tail()}"
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), f"backfill {backfill_id} ended {status}"
    run_of = {r["partition"]: r["runId"] for r in runs}
    for asset in UI_ASSETS:
        from_backfill = {e["partition"] for e in up.materializations(asset, partitions)
                         if run_of.get(e["partition"]) == e["runId"]}
        assert from_backfill == set(partitions), f"{asset} materialised by the backfill: {sorted(from_backfill)}"
    assert_checks_passed(up, run_of)
    page.goto(f"{up.url}/runs/b/{backfill_id}")
    for partition in partitions:
        expect(page.get_by_text(partition, exact=True).first).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
    expect(page.get_by_text("100% completed", exact=True)).to_have_count(len(UI_ASSETS))
    shot(page, artifacts, "08_backfill_completed")

    # A model's verdict against its strongest baseline, as a check on the asset.
    page.goto(f"{up.url}/assets/lens_patchtst?view=checks")
    expect(page.get_by_text(VERDICT_CHECK).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"^(wins|loses): patchtst")).first).to_be_visible()
    shot(page, artifacts, "09_verdict_check")

    # The sensor ticked: everything landed was ingested by the demo, so it requested nothing.
    wait_for(lambda: sensor_state(up, SENSOR)["ticks"], 120, f"{SENSOR} never ticked")
    ticks = sensor_state(up, SENSOR)["ticks"]
    assert ticks[0]["status"] in ("SKIPPED", "SUCCESS") and not ticks[0]["runIds"], ticks
    print(f"UI walk: {time.monotonic() - started:.0f} s")


# ---- 3. run monitoring frees the pool slot of a killed run --------------------------------------

def _claimed_by(instance: dg.DagsterInstance, run_id: str) -> bool:
    info = instance.event_log_storage.get_concurrency_info("duckdb")
    return any(slot.run_id == run_id for slot in info.claimed_slots)


@pytest.mark.fault("SIGKILL of a run worker and its step while the step holds the duckdb pool slot")
def test_a_killed_run_does_not_keep_the_duckdb_slot(netassets_up: NetassetsUp, instance) -> None:
    """deploy/dagster.yaml's run_monitoring: the WarmRunLauncher reports the run whose worker died as
    failed, and the daemon frees the slots that finished run still holds, so the next run that
    needs the pool starts instead of waiting for ever."""
    from netassets.lens.sample import write_lens

    up = netassets_up
    wait_for(lambda: not runs_in_progress(up), 180, "the UI walk's runs still in progress")
    # A region with 12 hours of 100 Hz data: its ingest step computes for seconds, long enough to
    # be caught holding the slot.
    write_lens(up.home / "landing" / "lens", ["slowtown"], dt.date(2023, 11, 1), 1, seed=1, hours=12)
    pipeline("lens").register(instance, ["slowtown"])

    victim = up.launch_partition_run("lens_ingest_job", "2023-11-01|slowtown", {})
    deadline = time.monotonic() + 120
    while not _claimed_by(instance, victim):
        assert up.run_status(victim) not in TERMINAL and time.monotonic() < deadline, (
            f"run {victim} never held the duckdb slot:\n{up.log_tail()}")
        time.sleep(0.1)
    [start] = instance.all_logs(victim, of_type=dg.DagsterEventType.RUN_START)
    worker = start.dagster_event.pid
    # deploy/dagster.yaml's WarmRunLauncher forked it: run monitoring asks that launcher about it
    assert instance.get_run_by_id(victim).tags.get(PID_TAG, "").partition(":")[0] == str(worker), (
        instance.get_run_by_id(victim).tags)
    doomed = {worker: "run worker", **descendants(worker)}  # and any process it started
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)
    assert _claimed_by(instance, victim), "the step finished before it was killed"

    killed_at = time.monotonic()
    survivor = up.launch_partition_run("lens_ingest_job", "2023-11-01|chicago", {})
    status = up.wait_run(survivor, timeout_s=150)
    waited = time.monotonic() - killed_at
    assert status == "SUCCESS", f"run {survivor} ended {status}:\n{up.log_tail()}"
    assert up.wait_run(victim, timeout_s=30) == "FAILURE"
    assert not _claimed_by(instance, victim)
    print(f"killed {sorted(doomed)}; the next run needing the pool succeeded {waited:.0f} s later")


# ---- 4. SIGTERM stops everything ------------------------------------------------------------

def test_sigterm_stops_every_child(netassets_up: NetassetsUp) -> None:
    children = descendants(netassets_up.process.pid)
    commands = " | ".join(children.values())
    for part in ("dagster dev", "dagster_webserver", "dagster._daemon", "osmem-server"):
        assert part in commands, f"{part} not among the children of netassets up: {commands}"
    assert netassets_up.stop(signal.SIGTERM) == 0, netassets_up.stdout()[-2000:]
    assert "stopping dagster dev and the search cluster" in netassets_up.stdout()
    deadline = time.monotonic() + 15  # orphans of a stopped parent may take a moment to exit
    while (alive := {pid: c for pid, c in children.items() if command_line(pid) == c}) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not alive, alive
