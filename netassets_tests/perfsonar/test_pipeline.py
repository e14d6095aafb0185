"""The perfSONAR assets end to end, materialised once for the module: two days pulled from the
test cluster, then loss + scores + alarms with their GX checks for the day with the injected hour."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from netassets.core.evaluation import Evaluation
from netassets.core.warehouse import DuckDBWarehouse
from netassets.defs.perfsonar.assets import BASELINE_CHECK, perfsonar_alarms, perfsonar_anomaly_scores, perfsonar_packet_loss
from netassets.defs.perfsonar.checks import perfsonar_anomaly_scores_gx, perfsonar_packet_loss_gx
from netassets.perfsonar.evaluation import DETECTOR, STEP, ZSCORE
from netassets.defs.perfsonar.resources import PerfsonarSearch
from netassets_tests.perfsonar.conftest import ANOMALY_HOUR, BROKEN, DAY, SIM_SOURCE, make_search
from netassets_tests.perfsonar.helpers import connections_to, expected_cells, materialize, metadata, table_cells

KEY = f"{DAY}|{SIM_SOURCE}"
ANOMALY = pd.Timestamp(dt.datetime.combine(DAY, dt.time(ANOMALY_HOUR)))


@dataclass
class PipelineRun:
    result: dg.ExecuteInProcessResult
    warehouse: DuckDBWarehouse
    search: PerfsonarSearch
    instance: dg.DagsterInstance
    home: Path


@pytest.fixture(scope="module")
def run(seeded_cluster, tmp_path_factory):
    home = tmp_path_factory.mktemp("perfsonar_home")
    with pytest.MonkeyPatch.context() as patch, seeded_cluster.server.clone() as clone, \
            dg.instance_for_test() as instance:
        patch.setenv("NETASSETS_HOME", str(home))
        seeded_cluster.sim.write_truth(home / "landing" / "perfsonar" / "ps_packetloss-sim.truth.json")
        warehouse, search = DuckDBWarehouse(database=str(home / "warehouse.duckdb")), make_search(clone.url)
        materialize([perfsonar_packet_loss], f"{DAY - dt.timedelta(days=1)}|{SIM_SOURCE}", instance, warehouse, search)
        result = materialize(
            [perfsonar_packet_loss, perfsonar_packet_loss_gx, perfsonar_anomaly_scores, perfsonar_anomaly_scores_gx,
             perfsonar_alarms], KEY, instance, warehouse, search)
        yield PipelineRun(result, warehouse, search, instance, home)


def test_loader_round_trip_counts_broken_and_duplicate_documents(seeded_cluster, run):
    expected = expected_cells(seeded_cluster.sim.documents, DAY, "dest_host")
    assert table_cells(run.warehouse, SIM_SOURCE, DAY) == pytest.approx(expected)
    meta = metadata(run.result, "perfsonar_packet_loss")
    assert meta["documents_skipped"] == len(BROKEN)
    assert {k: v for k, v in meta["skipped_by_reason"].items() if v} == {
        "missing_packet_loss": 1, "non_numeric_packet_loss": 1, "packet_loss_out_of_range": 1, "missing_destination": 1}
    day_docs = [d for d in seeded_cluster.sim.documents
                if dt.datetime.fromtimestamp(d["timestamp"] / 1000, dt.timezone.utc).date() == DAY]
    assert meta["duplicate_documents_collapsed"] == len(day_docs) - len(expected) > 0


def test_gx_checks_pass_on_the_partition(run):
    # keyed as their step keys read: <asset>_<check>
    checks = {f"{c.asset_key.to_user_string()}_{c.check_name}": c for c in run.result.get_asset_check_evaluations()}
    assert set(checks) == {"perfsonar_packet_loss_gx_expectations", "perfsonar_anomaly_scores_gx_expectations",
                           f"perfsonar_anomaly_scores_{BASELINE_CHECK}"}
    assert BASELINE_CHECK == "beats_strongest_baseline"
    gx = [checks["perfsonar_packet_loss_gx_expectations"], checks["perfsonar_anomaly_scores_gx_expectations"]]
    assert all(c.passed for c in gx), {c.asset_key.to_user_string(): c.metadata for c in gx}
    assert checks["perfsonar_packet_loss_gx_expectations"].metadata["rows_validated"].value == len(
        table_cells(run.warehouse, SIM_SOURCE, DAY))


def test_detector_flags_the_injected_hour_and_not_the_quiet_ones(run):
    scores = run.warehouse.query("SELECT hour, status, score, flagged FROM perfsonar_anomaly_scores WHERE day = $d",
                                 {"d": DAY}).to_pandas().set_index("hour")
    scored = scores[scores.status == "scored"]
    # The test cluster holds DAY 00:00-07:00: seven hours, each with a reference of at least 12 h.
    assert [h.hour for h in scored.index] == list(range(7))
    assert scored.loc[ANOMALY, "flagged"], scored
    assert not scored.drop(ANOMALY)["flagged"].any(), scored
    meta = metadata(run.result, "perfsonar_anomaly_scores")
    assert meta["hours_scored"] == 7 and meta["alarms"] == 1
    assert 0 <= meta["detector_baseline_agreement"] <= 1 and "baseline max z" in meta["scores"]


def test_alarms_name_a_destination_that_carried_the_anomaly(seeded_cluster, run):
    [truth] = seeded_cluster.sim.anomalous_hours
    alarms = run.warehouse.query("SELECT hour, top_destinations FROM perfsonar_alarms WHERE day = $d", {"d": DAY})
    assert alarms["hour"].to_list() == [ANOMALY.to_pydatetime()]
    assert alarms["top_destinations"][0].split(", ")[0] in truth["destinations"]


def test_plot_is_saved_and_inlined(run):
    meta = metadata(run.result, "perfsonar_anomaly_scores")
    assert meta["plot"].startswith("![plot](data:image/png;base64,")
    saved = run.home / "models" / "perfsonar" / "plots" / f"{DAY}_{SIM_SOURCE}.png"
    assert saved.stat().st_size > 10_000
    # the file is linked from the materialisation by path, and it is the inlined image
    assert meta["plot_path"] == str(saved)
    assert base64.b64decode(meta["plot"].split(",", 1)[1].rstrip(")")) == saved.read_bytes()


def test_alarms_are_written_back_to_an_index_only_when_asked(run):
    with run.search.client() as client:
        assert not client.indices.exists(index="ps_alarms")
        result = materialize([perfsonar_alarms], KEY, run.instance, run.warehouse, run.search,
                             run_config={"ops": {"perfsonar_alarms": {"config": {"write_back_index": "ps_alarms"}}}})
        hits = client.search(index="ps_alarms", body={"query": {"match_all": {}}})["hits"]["hits"]
    assert connections_to(run.search.hosts) == 0  # the write-back's bulk client was closed too
    assert metadata(result, "perfsonar_alarms")["written_back"] == len(hits) == 1
    assert hits[0]["_source"]["hour"] == ANOMALY.isoformat()


def test_scores_carry_the_evaluation_against_the_baselines_on_the_labelled_hours(run):
    meta = metadata(run.result, "perfsonar_anomaly_scores")
    evaluation = Evaluation.from_dict(meta["evaluation_json"])
    assert evaluation.rows == 7 and evaluation.split == "test"
    assert set(evaluation.baselines) == {ZSCORE, STEP}
    assert evaluation.scores[DETECTOR]["tp"] == 1 and evaluation.scores[DETECTOR]["fp"] == 0
    assert meta["verdict"] == evaluation.verdict and "no promotion path" in meta["evaluation"]
    [check] = [c for c in run.result.get_asset_check_evaluations() if c.check_name == BASELINE_CHECK]
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed == evaluation.beats_strongest_baseline and check.description == evaluation.verdict
