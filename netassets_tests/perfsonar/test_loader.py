"""perfsonar_packet_loss against a real osmem-server and a real DuckDB file."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest

from netassets.defs.perfsonar.assets import perfsonar_packet_loss
from netassets.defs.perfsonar.resources import PerfsonarSearch
from netassets.perfsonar.search import PASSWORD_ENV, USER_ENV
from netassets_tests.perfsonar.conftest import DAY, OLD_SOURCE, REAL_SOURCE, SIM_SOURCE
from netassets_tests.perfsonar.helpers import (
    connections_to, expected_cells, failure_message, materialize, metadata, table_cells,
)

KEY = f"{DAY}|{SIM_SOURCE}"


def test_old_schema_documents_through_dynamic_mapping(seeded_cluster, search, warehouse, instance):
    materialize([perfsonar_packet_loss], f"{DAY}|{OLD_SOURCE}", instance, warehouse, search)
    assert table_cells(warehouse, OLD_SOURCE, DAY) == pytest.approx(expected_cells(seeded_cluster.old, DAY, "dest"))
    sites = warehouse.query("SELECT DISTINCT source_site FROM perfsonar_packet_loss WHERE source = $s", {"s": OLD_SOURCE})
    assert sites["source_site"].to_list() == [None]  # old documents have no sites


def test_real_esmond_measurements_round_trip(shared_data, search, warehouse, instance):
    result = materialize([perfsonar_packet_loss], f"{DAY}|{REAL_SOURCE}", instance, warehouse, search)
    lost = json.loads((shared_data / "perfsonar" / "packet_count_lost_data.json").read_text())
    sent = {r["ts"] // 60_000: r["val"] for r in json.loads((shared_data / "perfsonar" / "packet_count_sent_data.json").read_text())}
    ratios = [r["val"] / sent[r["ts"] // 60_000] for r in lost if sent.get(r["ts"] // 60_000)]
    table = warehouse.query("SELECT packet_loss FROM perfsonar_packet_loss WHERE source = $s ORDER BY minute",
                            {"s": REAL_SOURCE})["packet_loss"].to_list()
    assert table == pytest.approx([x for x in ratios if x <= 1])
    meta = metadata(result, "perfsonar_packet_loss")
    assert meta["skipped_by_reason"]["packet_loss_out_of_range"] == sum(x > 1 for x in ratios) > 0


def test_a_run_closes_its_connection_to_the_cluster(search, search_url, warehouse, instance):
    assert materialize([perfsonar_packet_loss], KEY, instance, warehouse, search).success
    assert connections_to(search_url) == 0


def test_a_day_without_data_is_a_clear_error(search, warehouse, instance):
    empty_day = DAY + dt.timedelta(days=3)
    result = materialize([perfsonar_packet_loss], f"{empty_day}|{SIM_SOURCE}", instance, warehouse, search,
                         raise_on_error=False)
    assert not result.success
    assert f"no usable packet-loss documents from source '{SIM_SOURCE}' on {empty_day}" in failure_message(result)


def test_server_down_is_a_clear_error(closed_port_url, warehouse, instance):
    down = PerfsonarSearch(hosts=closed_port_url, max_retries=1, timeout_seconds=2)
    result = materialize([perfsonar_packet_loss], KEY, instance, warehouse, down, raise_on_error=False)
    assert not result.success
    assert f"on {closed_port_url}" in failure_message(result) and "cluster unreachable" in failure_message(result)


def _run_text(instance, result) -> str:
    records = instance.all_logs(result.run_id)
    run = instance.get_run_by_id(result.run_id)
    return "\n".join(r.to_json() if hasattr(r, "to_json") else repr(r) for r in records) + repr(run)


def test_credentials_come_from_env_and_never_reach_logs_or_metadata(auth_proxy, warehouse, instance, monkeypatch):
    url, user, password = auth_proxy
    monkeypatch.setenv(USER_ENV, user)
    monkeypatch.setenv(PASSWORD_ENV, password)
    search = PerfsonarSearch(hosts=url, username=dg.EnvVar(USER_ENV), password=dg.EnvVar(PASSWORD_ENV))
    ok = materialize([perfsonar_packet_loss], KEY, instance, warehouse, search)
    assert metadata(ok, "perfsonar_packet_loss")["dagster/row_count"] > 0

    monkeypatch.setenv(PASSWORD_ENV, password + "-wrong")
    before = table_cells(warehouse, SIM_SOURCE, DAY)
    failed = materialize([perfsonar_packet_loss], KEY, instance, warehouse, search, raise_on_error=False)
    assert not failed.success
    assert "authentication failed (HTTP 401)" in failure_message(failed)
    assert table_cells(warehouse, SIM_SOURCE, DAY) == before  # the failed run left the partition as it was
    for result in (ok, failed):
        text = _run_text(instance, result)
        assert "perfsonar_packet_loss" in text  # the search below looks at real content
        assert password not in text  # neither the right secret nor the wrong one (which contains it)


@pytest.mark.parametrize(("change", "reason"), [
    ({"timestamp": 1_710_032_400_000_000}, "bad_timestamp"),  # microseconds: year ~56000
    ({"timestamp": "1e400"}, "bad_timestamp"),
    ({"timestamp": -5}, "bad_timestamp"),
    ({"packet_loss": 10**400}, "non_numeric_packet_loss"),  # an integer beyond float64
    ({"src_host": ["a.example.org", "b.example.org"]}, "missing_source"),  # an array is no host
    ({"dest_host": {"name": "x"}}, "missing_destination"),
])
def test_a_document_no_measurement_can_come_from_is_skipped_by_reason(change, reason):
    from netassets.perfsonar.documents import FieldMapping, parse_hit

    document = {"timestamp": 1_710_032_400_000, "src_host": "a.example.org", "dest_host": "d.example.net",
                "packet_loss": 0.01}
    assert not isinstance(parse_hit({"_source": document}, FieldMapping()), str)
    assert parse_hit({"_source": {**document, **change}}, FieldMapping()) == reason
