"""The simulator and `netassets generate perfsonar` (no cluster needed)."""

from __future__ import annotations

import datetime as dt
import json

from netassets.cli import main
from netassets.perfsonar.documents import FieldMapping, parse_hits
from netassets.perfsonar.evaluation import read_truth
from netassets.perfsonar.sample import simulate


def test_generate_writes_bulk_ndjson_and_the_truth(tmp_path, netassets_home):
    assert main(["generate", "perfsonar", "--start", "2024-03-01", "--days", "2", "--destinations", "2",
                 "--anomalies-per-day", "2", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "ps_packetloss-sim.ndjson").read_text().splitlines()
    actions, docs = [json.loads(x) for x in lines[::2]], [json.loads(x) for x in lines[1::2]]
    assert all(a["index"]["_index"] == "ps_packetloss-sim" for a in actions)
    assert len({a["index"]["_id"] for a in actions}) == len(docs) > 2 * 1440 * 2 * 0.95
    truth = read_truth(tmp_path / "ps_packetloss-sim.truth.json")
    assert (truth.source, str(truth.start), str(truth.end)) == ("psb.example.org", "2024-03-01 00:00:00",
                                                                 "2024-03-03 00:00:00")
    assert len(truth.anomalous) == 2 and all(str(h).startswith("2024-03-02") for h in truth.anomalous)
    assert parse_hits(({"_source": d} for d in docs), FieldMapping()).skipped_total == 0


def test_old_schema_simulation_parses_through_the_same_field_mapping():
    sim = simulate(dt.date(2024, 3, 1), days=1, destinations=2, seed=1, old_schema=True)
    parsed = parse_hits(({"_source": d} for d in sim.documents), FieldMapping())
    assert parsed.skipped_total == 0 and {m.destination for m in parsed.measurements} == {
        d["dest"] for d in sim.documents}
    assert all(m.source_site is None for m in parsed.measurements)


def test_the_generator_prints_the_cluster_url_without_credentials():
    from netassets.perfsonar.sample import _without_credentials

    assert _without_credentials("https://reader:pw-SECRET@search.example:9200/x") == "https://search.example:9200/x"
