"""perfsonar_new_data_sensor ticks against a real osmem-server clone."""

from __future__ import annotations

import datetime as dt
import json
import time

import dagster as dg
import pytest

from netassets.defs.perfsonar.automation import perfsonar_new_data_sensor
from netassets.defs.perfsonar.resources import PerfsonarSearch
from netassets.perfsonar.sample import bulk_actions, index_documents
from netassets.perfsonar.search import SearchAuthError
from netassets.pipelines import pipeline
from netassets_tests.perfsonar.conftest import DAY, OLD_SOURCE, REAL_SOURCE, SIM_SOURCE, make_search
from netassets_tests.perfsonar.helpers import connections_to

PERFSONAR = pipeline("perfsonar")


def tick(instance, search, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"perfsonar_search": search})
    return perfsonar_new_data_sensor(context)


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).date().isoformat()


def _index_now(search: PerfsonarSearch, index: str, documents: list[dict]) -> None:
    """Documents indexed a while ago by an ingest pipeline that stamps indexed_at (past the settle time)."""
    stamp = int(time.time() * 1000) - 120_000
    from opensearchpy import helpers

    with search.client() as client:
        helpers.bulk(client, bulk_actions(index, [{**d, "indexed_at": stamp} for d in documents]), refresh=True)


def _doc(doc_id: str, when: dt.datetime, source: str, loss: float = 0.01) -> dict:
    return {"_id": doc_id, "timestamp": int(when.replace(tzinfo=dt.timezone.utc).timestamp() * 1000),
            "src_host": source, "dest_host": "ps00.site0.example.net", "packet_loss": loss}


def test_first_tick_requests_every_partition_in_the_index_and_registers_sources(seeded_cluster, search, instance):
    result = tick(instance, search)
    expected = {f"{_day(d['timestamp'])}|{SIM_SOURCE}" for d in seeded_cluster.sim.documents}
    expected |= {f"{DAY}|{OLD_SOURCE}"} | ({f"{DAY}|{REAL_SOURCE}"} if seeded_cluster.real else set())
    assert {r.partition_key for r in result.run_requests} == expected
    [added] = result.dynamic_partitions_requests
    assert added.partitions_def_name == PERFSONAR.dynamic.name
    assert set(added.partition_keys) == {key.split("|")[1] for key in expected}
    assert json.loads(result.cursor)["indexed_at"] == max(d["indexed_at"] for d in seeded_cluster.sim.documents
                                                          + seeded_cluster.old + seeded_cluster.real)
    # The same tick evaluated again (its cursor not stored) asks for the same run keys: no duplicate runs.
    assert [r.run_key for r in tick(instance, search).run_requests] == [r.run_key for r in result.run_requests]


def test_a_tick_closes_its_connection_to_the_cluster(search, search_url, instance):
    assert tick(instance, search).run_requests  # the tick did read the cluster
    assert connections_to(search_url) == 0


def test_nothing_new_then_new_then_late_then_unsettled_documents(search, search_url, instance):
    cursor = tick(instance, search).cursor
    idle = tick(instance, search, cursor)
    assert isinstance(idle, dg.SkipReason) and "no documents indexed since" in idle.skip_message

    PERFSONAR.register(instance, [SIM_SOURCE, OLD_SOURCE, REAL_SOURCE])
    _index_now(search, "ps_packetloss-sim", [_doc("new-1", dt.datetime.combine(DAY, dt.time(9)), "psc.example.org"),
                                             _doc("new-2", dt.datetime.combine(DAY, dt.time(9, 1)), "psc.example.org")])
    fresh = tick(instance, search, cursor)
    assert [r.partition_key for r in fresh.run_requests] == [f"{DAY}|psc.example.org"]
    assert fresh.dynamic_partitions_requests[0].partition_keys == ["psc.example.org"]
    assert json.loads(fresh.cursor) != json.loads(cursor)

    # A late document: a measurement from three days back, indexed now, re-runs only its day.
    late_day = DAY - dt.timedelta(days=3)
    _index_now(search, "ps_packetloss-sim", [_doc("late-1", dt.datetime.combine(late_day, dt.time(23, 59)), SIM_SOURCE)])
    late = tick(instance, search, fresh.cursor)
    assert [r.partition_key for r in late.run_requests] == [f"{late_day}|{SIM_SOURCE}"]
    assert late.dynamic_partitions_requests == []  # psb is known already
    assert isinstance(tick(instance, search, late.cursor), dg.SkipReason)

    # A document indexed this instant waits for the settle time (it may still be in a refresh).
    [action] = bulk_actions("ps_packetloss-sim", [{**_doc("just-now", dt.datetime.combine(DAY, dt.time(9)), SIM_SOURCE),
                                                     "indexed_at": int(time.time() * 1000)}])
    with search.client() as client:
        client.index(index=action["_index"], id=action["_id"], body=action["_source"], refresh=True)
    assert isinstance(tick(instance, make_search(search_url, settle_seconds=600), late.cursor), dg.SkipReason)
    assert [r.partition_key for r in tick(instance, search, late.cursor).run_requests] == [f"{DAY}|{SIM_SOURCE}"]


def test_unreachable_cluster_skips_and_keeps_the_cursor(closed_port_url, instance):
    down = PerfsonarSearch(hosts=closed_port_url, settle_seconds=0, max_retries=0, timeout_seconds=2)
    cursor = json.dumps({"indexed_at": 1, "tiebreaker": "a"})
    result = tick(instance, down, cursor)
    assert isinstance(result, dg.SkipReason)
    assert "cluster unreachable" in result.skip_message and "cursor kept at" in result.skip_message


def test_wrong_credentials_fail_the_tick_without_showing_them(auth_proxy, instance):
    url, user, password = auth_proxy
    wrong = PerfsonarSearch(hosts=url, username=user, password=password + "x", settle_seconds=0)
    with pytest.raises(SearchAuthError, match=r"authentication failed \(HTTP 401\)") as caught:
        tick(instance, wrong)
    assert password not in str(caught.value)
    right = PerfsonarSearch(hosts=url, username=user, password=password, settle_seconds=0)
    assert tick(instance, right).run_requests


def test_a_reloaded_day_rescores_the_day_after_once_its_losses_are_in(instance):
    """What perfsonar_rescore_sensor requested, now the automation conditions of the scores and
    alarms (core.automation.follow_upstream) evaluated as the netassets_automation sensor does."""
    from netassets.defs.perfsonar.assets import perfsonar_alarms, perfsonar_anomaly_scores, perfsonar_packet_loss

    # perfSONAR's assets alone (evaluating conditions runs nothing: the resources are never used)
    defs = dg.Definitions(assets=[perfsonar_packet_loss, perfsonar_anomaly_scores, perfsonar_alarms],
                          resources={key: dg.ResourceDefinition.none_resource() for key in ("warehouse", "perfsonar_search")})
    followers = [dg.AssetKey("perfsonar_anomaly_scores"), dg.AssetKey("perfsonar_alarms")]
    cursor = None

    def evaluate() -> dict[str, list[str]]:
        nonlocal cursor
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                                   asset_selection=dg.AssetSelection.assets(*followers))
        cursor = result.cursor
        requested = {key.path[-1]: sorted(str(p) for p in result.get_requested_partitions(key)) for key in followers}
        return {name: keys for name, keys in requested.items() if keys}

    def run(day: dt.date) -> None:  # the materialisations a perfsonar_ingest_job run for the day records
        for asset in ("perfsonar_packet_loss", "perfsonar_anomaly_scores", "perfsonar_alarms"):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=f"{day}|{SIM_SOURCE}"))

    PERFSONAR.register(instance, [SIM_SOURCE])
    run(DAY - dt.timedelta(days=1))
    assert evaluate() == {}  # the first evaluation starts from now: history is not re-scored
    assert evaluate() == {}  # nothing changed: nothing requested

    run(DAY)  # today, scored by its own run; the day after has no losses yet: nothing to re-score
    assert evaluate() == {}

    run(DAY - dt.timedelta(days=1))  # late documents re-loaded yesterday: today's first hours change
    assert evaluate() == {"perfsonar_anomaly_scores": [f"{DAY}|{SIM_SOURCE}"], "perfsonar_alarms": [f"{DAY}|{SIM_SOURCE}"]}
    assert evaluate() == {}  # handled once
    assert evaluate() == {}


@pytest.mark.fault("the search cluster going down in the middle of a paged read")
def test_cluster_down_mid_page_skips_keeps_the_cursor_and_loses_nothing(search, failing_cluster, instance, record_property):
    healthy = tick(instance, make_search(search.hosts, page_size=50))
    flaky = make_search(failing_cluster(2), page_size=50)  # two pages answered, then the cluster is gone
    result = tick(instance, flaky)
    assert isinstance(result, dg.SkipReason)
    assert "cluster unreachable" in result.skip_message and "cursor kept at the beginning" in result.skip_message
    again = tick(instance, make_search(search.hosts, page_size=50))  # back up: the same tick from the same cursor
    record_property("rows_lost", len(healthy.run_requests) - len(again.run_requests))
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in healthy.run_requests]
    assert again.cursor == healthy.cursor


def test_documents_without_the_cursor_field_are_counted_by_the_tick_and_the_loader(search, instance, warehouse):
    from opensearchpy import helpers

    from netassets.defs.perfsonar.assets import perfsonar_packet_loss

    blind = [_doc(f"no-cursor-{i}", dt.datetime.combine(DAY, dt.time(3, i)), SIM_SOURCE) for i in range(3)]
    with search.client() as client:  # an ingest pipeline that forgot to stamp indexed_at
        helpers.bulk(client, bulk_actions("ps_packetloss-sim", blind), refresh=True)
    first = tick(instance, search)
    later = tick(instance, search, first.cursor)
    assert isinstance(later, dg.SkipReason) and "3 documents" in later.skip_message and "never seen" in later.skip_message
    PERFSONAR.register(instance, [SIM_SOURCE])
    result = dg.materialize([perfsonar_packet_loss], partition_key=f"{DAY}|{SIM_SOURCE}", instance=instance,
                            resources={"perfsonar_search": search, "warehouse": warehouse})
    metadata = result.asset_materializations_for_node("perfsonar_packet_loss")[0].metadata
    assert metadata["documents_without_indexed_at"].value == 3


def test_one_id_in_two_indices_at_one_instant_is_seen_in_both_even_across_ticks(search_url, instance):
    """``_id`` is unique only within an index: the cursor holds the index too, so a tick ending
    between the two documents does not pass over the second."""
    search = make_search(search_url, page_size=1)
    when = dt.datetime.combine(DAY, dt.time(5))
    _index_now(search, "ps_packetloss-twin-a", [_doc("twin", when, "twin-a.example.org")])
    _index_now(search, "ps_packetloss-twin-b", [_doc("twin", when, "twin-b.example.org")])
    seen, cursor = set(), None
    for _ in range(50):  # one document a page; everything before the twins first
        result = tick(instance, search, cursor)
        if isinstance(result, dg.SkipReason):
            break
        seen |= {r.partition_key for r in result.run_requests}
        cursor = result.cursor
    assert {f"{DAY}|twin-a.example.org", f"{DAY}|twin-b.example.org"} <= seen
    assert json.loads(cursor)["index"].startswith("ps_packetloss")


def test_a_cursor_stored_before_the_index_was_part_of_it_resumes_at_its_instant(search, instance):
    first = tick(instance, search)
    stored = json.loads(first.cursor)
    older = json.dumps({"indexed_at": stored["indexed_at"], "tiebreaker": stored["tiebreaker"]})
    again = tick(instance, search, older)  # that instant's documents are read again (their runs: a replace)
    assert isinstance(again, dg.SensorResult) and json.loads(again.cursor) == stored
    assert isinstance(tick(instance, search, first.cursor), dg.SkipReason)  # the full cursor: nothing again


def test_a_timestamp_in_microseconds_is_skipped_and_the_sensor_goes_on(search_url, instance):
    """A producer writing microseconds makes a valid Elasticsearch date of year ~56000, which no
    Python date holds: it is a bad timestamp, not a tick that fails forever."""
    search = make_search(search_url)
    first = tick(instance, search)
    when = dt.datetime.combine(DAY, dt.time(6))
    micro = {**_doc("micro", when, "micro.example.org"), "timestamp": _doc("x", when, "x")["timestamp"] * 1000}
    _index_now(search, "ps_packetloss-micro", [micro, _doc("fine", when, "fine.example.org")])
    result = tick(instance, search, first.cursor)
    assert [r.partition_key for r in result.run_requests] == [f"{DAY}|fine.example.org"]
    assert json.loads(result.cursor)["indexed_at"] > json.loads(first.cursor)["indexed_at"]


def test_a_day_holds_exactly_its_source_where_an_old_index_matched_more(search_url):
    """An old index's source field is analysed text, whose term query also matches another case
    and more words: the day keeps only its own source's measurements."""
    search = make_search(search_url)
    when = dt.datetime.combine(DAY, dt.time(7))
    documents = [_doc("upper", when, "CASE.EXAMPLE.ORG", 0.9), _doc("words", when, "case.example.org junk", 0.8),
                 _doc("exact", when, "case.example.org", 0.0)]
    index_documents(search_url, "ps_packetloss-old-case", [{**d, "src": d.pop("src_host")} for d in documents],
                    old_schema=True)
    got = search.fetch_day("case.example.org", DAY).measurements
    assert [(m.source, m.packet_loss) for m in got] == [("case.example.org", 0.0)]


def test_a_partial_answer_from_the_cluster_is_refused_not_taken_as_the_page():
    """A failed or timed-out shard still answers HTTP 200 with the other shards' hits. osmem-server
    has one shard and cannot fail it, so this fault is a stand-in client's answer (the only fake
    in these tests)."""
    from netassets.perfsonar.search import SearchError

    class PartialAnswer:
        def search(self, index, body, params):
            assert params == {"allow_partial_search_results": "false"}
            return {"timed_out": False, "_shards": {"total": 2, "successful": 1, "failed": 1},
                    "hits": {"hits": [{"_source": {}, "sort": [1, "i", "a"]}]}}

    search = make_search("http://127.0.0.1:9")
    with pytest.raises(SearchError, match=r"1 of 2 shards \(1 failed"):
        list(search._pages(PartialAnswer(), {"match_all": {}}, [], [], None, None))


@pytest.mark.parametrize("hosts", ["http://reader:8080/pw-SECRET@127.0.0.1:9200", "http://reader:pw-SECRET@host",
                                   "http://host:pw-SECRET/x", "https://reader:pw#SECRET@host"])
def test_a_host_entry_that_may_hold_a_password_is_refused_without_echoing_it(hosts):
    with pytest.raises(ValueError) as refused:
        make_search(f"http://127.0.0.1:9200,{hosts}").host_list
    assert "SECRET" not in str(refused.value) and "entry 2 of" in str(refused.value)


def test_the_resource_does_not_show_its_password():
    search = PerfsonarSearch(hosts="http://127.0.0.1:9200", username="reader", password="pw-SECRET")
    assert "SECRET" not in repr(search) and "SECRET" not in str(search)
