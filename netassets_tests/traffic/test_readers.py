"""Flow readers on hand-made lines, bad input, window-crossing JSON arrays and the real CIC-DoH sample."""

import json
import re
import math

import numpy as np
import pytest

from netassets.traffic import readers
from netassets.traffic.readers import BadFlowError, FlowFile, index_files


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def read_all(path):
    with FlowFile(path) as flow_file:
        return [(record, flow_file.read(record)) for record in flow_file.records()]


def test_csv_lines_are_read_back_from_their_offsets(tmp_path):
    path = write(tmp_path, "f.csv", "[1,0,0.5],[0,1,2.5]\n[3,4,5]\r\n[-1,2e3,0]\n")
    flows = read_all(path)
    assert [r.line for r, _ in flows] == [1, 2, 3]
    np.testing.assert_array_equal(flows[0][1], [[1, 0, 0.5], [0, 1, 2.5]])
    np.testing.assert_array_equal(flows[1][1], [[3, 4, 5]])  # CRLF tolerated
    np.testing.assert_array_equal(flows[2][1], [[-1, 2000, 0]])
    raw = path.read_bytes()
    assert raw[flows[1][0].offset : flows[1][0].offset + flows[1][0].length] == b"[3,4,5]"


def test_csv_without_final_newline_keeps_last_flow(tmp_path):
    flows = read_all(write(tmp_path, "f.csv", "[1,2]\n[3,4]"))
    assert len(flows) == 2 and flows[1][1].tolist() == [[3, 4]]


FLOW_A = {"timestamp": [0.0, 0.5, 0.75], "direction_length": [100, -1500, 40], "label": 1}
FLOW_B = {"timestamp": [2.0, 2.0], "direction_length": [-60, 60], "label": 0}
EXPECTED_A = [[1, 100, 0.0], [-1, 1500, 0.5], [1, 40, 0.25]]
EXPECTED_B = [[-1, 60, 0.0], [1, 60, 0.0]]


def test_json_array_flows_become_direction_length_gap(tmp_path):
    path = write(tmp_path, "f.json", json.dumps([FLOW_A, FLOW_B], indent=1))
    flows = read_all(path)
    assert len(flows) == 2
    np.testing.assert_allclose(flows[0][1], EXPECTED_A)
    np.testing.assert_allclose(flows[1][1], EXPECTED_B)
    object_lines = [i + 1 for i, line in enumerate(path.read_text().splitlines()) if line.strip() == "{"]
    assert [r.line for r, _ in flows] == object_lines


def test_jsonl_flows(tmp_path):
    path = write(tmp_path, "f.jsonl", json.dumps(FLOW_A) + "\n" + json.dumps(FLOW_B) + "\n")
    flows = read_all(path)
    np.testing.assert_allclose(flows[1][1], EXPECTED_B)
    assert [r.line for r, _ in flows] == [1, 2]


def test_json_array_scan_across_small_windows_matches_json_load(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_JSON_CHUNK", 37)  # forces refills mid-object and window compaction
    rng = np.random.default_rng(3)
    flows = []
    for _ in range(25):
        n = int(rng.integers(1, 12))
        flows.append({"timestamp": np.cumsum(rng.random(n)).round(4).tolist(),
                      "direction_length": rng.integers(-1500, 1500, n).tolist(), "source_file": "é/{x}"})
    path = write(tmp_path, "f.json", json.dumps(flows, indent=2, ensure_ascii=False))
    got = read_all(path)
    assert len(got) == len(flows)
    text = path.read_text()
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip() == "{"]
    for (record, packets), flow, line in zip(got, flows, lines):
        np.testing.assert_allclose(packets[:, 1], np.abs(flow["direction_length"]))
        assert record.line == line


BAD_CSV = [
    ("[1,2],[3,4\n", "malformed", "malformed JSON"),
    ("[1,2],[3,4,5]\n", "inconsistent_dimension", "packet 2 has 3 features, packet 1 has 2"),
    ("\n", "empty_flow", "empty flow"),
    ("[1,NaN]\n", "non_finite", "non-finite value nan at packet 1, feature 2"),
    ("[1,2],[Infinity,0]\n", "non_finite", "non-finite value inf at packet 2, feature 1"),
    ('[1,"x"]\n', "non_numeric", "non-numeric"),
    ("1,2,3\n", "malformed", "packet 1 is not a JSON array"),
]


@pytest.mark.parametrize("bad_line, reason, message", BAD_CSV)
def test_bad_csv_flow_names_file_and_line_or_is_skipped_and_counted(tmp_path, bad_line, reason, message):
    path = write(tmp_path, "f.csv", "[1,2],[3,4]\n" + bad_line + "[5,6]\n")
    with pytest.raises(BadFlowError) as error:
        index_files([path], tmp_path)
    assert f"{path}:2: " in str(error.value) and message in str(error.value)
    skipped = index_files([path], tmp_path, skip_bad=True)
    assert skipped.frame["line_no"].to_list() == [1, 3]
    assert dict(skipped.skipped) == {reason: 1}
    assert skipped.skipped_examples[0].startswith(f"{path}:2: ")


def test_dimension_change_between_flows_and_files_is_an_error(tmp_path):
    first = write(tmp_path, "a.csv", "[1,2],[3,4]\n")
    second = write(tmp_path, "b.csv", "[1,2,3]\n")
    with pytest.raises(BadFlowError, match=rf"{second}:1: packets have 3 features, but {first}:1 has 2"):
        index_files([first, second], tmp_path)


@pytest.mark.parametrize("flow, message", [
    ({"timestamp": [], "direction_length": []}, "empty flow"),
    ({"timestamp": [0, 1], "direction_length": [5]}, "2 timestamps but 1 direction_length"),
    ({"timestamp": [1, 0], "direction_length": [5, 5]}, "timestamps go backwards at packet 2"),
    ({"timestamp": [0, math.nan], "direction_length": [5, 5]}, "non-finite"),
    ({"direction_length": [5]}, "needs 'timestamp' and 'direction_length'"),
])
def test_bad_json_flows(tmp_path, flow, message):
    path = write(tmp_path, "f.json", "[\n" + json.dumps(FLOW_A) + ",\n" + json.dumps(flow) + "\n]")
    with pytest.raises(BadFlowError, match=message) as error:
        index_files([path], tmp_path)
    assert f"{path}:3: " in str(error.value)


def test_malformed_json_array_names_the_line(tmp_path):
    path = write(tmp_path, "f.json", "[\n" + json.dumps(FLOW_A) + ",\n{\"timestamp\": [1,}\n]")
    with pytest.raises(BadFlowError, match=rf"{path}:3: malformed JSON"):
        index_files([path], tmp_path)


def test_index_leaves_raw_files_untouched(tmp_path):
    path = write(tmp_path, "f.csv", "[1,2]\n[3,4],[5,6]\n")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    index = index_files([path], tmp_path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert index.frame["n_packets"].to_list() == [1, 2]
    assert index.frame["source_file"].to_list() == ["f.csv", "f.csv"]


def test_real_cicdoh_flows(shared_data):
    path = shared_data / "traffic" / "cicdoh20_test.json"
    truth = json.loads(path.read_text())
    index = index_files([path], shared_data)
    assert index.n_features == 3 and len(index.frame) == len(truth)
    assert index.frame["n_packets"].to_list() == [flow["packet_num"] for flow in truth]
    with FlowFile(path) as flow_file:
        last = index.frame.row(-1, named=True)
        packets = flow_file.read(readers.FlowRecord(last["line_no"], last["byte_offset"], last["byte_length"]))
    np.testing.assert_allclose(packets[:, 1], np.abs(truth[-1]["direction_length"]))
    np.testing.assert_allclose(packets[1:, 2], np.diff(truth[-1]["timestamp"]), atol=1e-6)


def _json_array_with_bad_flow(n_flows, bad_at, bad_text):
    """A multi-line JSON array of flows, flow ``bad_at`` replaced by ``bad_text``; the line each flow starts on."""
    rng = np.random.default_rng(7)
    parts, starts, line = [], [], 2  # line 1 holds the opening "["
    for i in range(n_flows):
        n = int(rng.integers(1, 9))
        flow = {"timestamp": np.cumsum(rng.random(n)).round(3).tolist(),
                "direction_length": rng.integers(-1500, 1500, n).tolist(), "label": i % 2}
        text = bad_text if i == bad_at else json.dumps(flow, indent=1)
        parts.append(text)
        starts.append(line)
        line += text.count("\n") + 1  # the object's own lines, then the ",\n" separator
    return "[\n" + ",\n".join(parts) + "\n]\n", starts


BACKWARDS = json.dumps({"timestamp": [3, 2], "direction_length": [5, 5]}, indent=1)


@pytest.mark.parametrize("chunk", [None, 512])  # None: the real window; 512: hundreds of window compactions
def test_bad_flow_deep_in_json_array_names_its_line(tmp_path, monkeypatch, chunk):
    if chunk:
        monkeypatch.setattr(readers, "_JSON_CHUNK", chunk)
    text, starts = _json_array_with_bad_flow(400, 357, BACKWARDS)
    path = write(tmp_path, "f.json", text)
    with pytest.raises(BadFlowError, match=rf"^{path}:{starts[357]}: timestamps go backwards at packet 2$"):
        index_files([path], tmp_path)
    skipped = index_files([path], tmp_path, skip_bad=True)
    assert skipped.frame["line_no"].to_list() == starts[:357] + starts[358:]

    text, starts = _json_array_with_bad_flow(400, 301, '{"timestamp": [1,\n "direction_length": }')
    path = write(tmp_path, "g.json", text)
    # the line of the error itself (the object's second line), and the line its flow starts on
    with pytest.raises(BadFlowError, match=rf"^{path}:{starts[301] + 1}: malformed JSON .*"
                                           rf"in the flow starting on line {starts[301]}: "):
        index_files([path], tmp_path)


class _CountingText(str):
    """A str that adds up how many characters ``count`` is asked to look at."""

    examined = 0

    def count(self, sub, start=0, end=None):
        _CountingText.examined += (len(self) if end is None else end) - start
        return super().count(sub, start, end)


def test_line_counter_looks_at_each_character_once():
    text = _CountingText("{\n}\n" * 1000)
    counter = readers.LineCounter()
    positions = range(0, len(text) + 1, 4)
    assert [counter.at(text, pos) for pos in positions] == [1 + pos // 2 for pos in positions]
    assert _CountingText.examined == len(text)

    counter = readers.LineCounter()
    assert counter.at(text, 2000) == 1 + 1000
    counter.drop(2000)  # the window lost what was consumed: positions now count from there
    assert counter.at(text[2000:], 6) == 1 + 1000 + 3


@pytest.mark.parametrize("line, reason, message", [
    # numpy read a nested array as a third dimension: the cache then held more values than its index said
    ("[[1,2],[3,4]]\n", "malformed", "a nested array at packet 1, feature 1"),
    ("[[1,NaN]]\n", "malformed", "a nested array at packet 1, feature 1"),
    ('[1,"2"]\n', "non_numeric", "non-numeric feature value, the string \"'2'\", at packet 1, feature 2"),
])
def test_a_nested_array_or_a_string_is_never_read_as_numbers(tmp_path, line, reason, message):
    path = tmp_path / "flows.csv"
    path.write_text("[1,2],[3,4]\n" + line)
    with FlowFile(path) as flow_file:
        first, second = flow_file.records()
        assert flow_file.read(first).tolist() == [[1, 2], [3, 4]]
        with pytest.raises(BadFlowError, match=re.escape(message)) as refused:
            flow_file.read(second)
    assert refused.value.reason == reason and f"{path}:2:" in str(refused.value)


@pytest.mark.parametrize("text, message", [
    ('[{"timestamp":[1,2],"direction_length":[100,-50]}] trailing', "bytes after the closing ']'"),
    ('[{"timestamp":[1,2],"direction_length":[100,-50]}]\n[{"timestamp":[3],"direction_length":[1]}]',
     "bytes after the closing ']'"),  # a second array appended: its flows were lost unseen
    ("[" + "[" * 100_000 + "]" * 100_000 + "]", "nested too deeply"),
    ('[{"timestamp":[' + "9" * 5000 + '],"direction_length":[1]}]', "unreadable JSON value"),
])
def test_a_json_file_that_is_no_clean_array_of_flows_is_named(tmp_path, text, message):
    path = tmp_path / "flows.json"
    path.write_text(text)
    with FlowFile(path) as flow_file, pytest.raises(BadFlowError, match=re.escape(message)) as refused:
        list(flow_file.records())
    assert str(refused.value).startswith(f"{path}:")


def test_a_malformed_flow_early_in_a_large_json_file_does_not_read_the_rest_into_memory(tmp_path):
    """Each decode error read the window on to the end of the file (and copied it at every step):
    the scan's Python allocations, traced, stay a window's, not the file's."""
    import tracemalloc

    flow = '{"timestamp":[1,2],"direction_length":[100,-50]},'
    path = tmp_path / "big.json"
    with path.open("w") as out:
        out.write('[{"timestamp":[1,2],"direction_length":[,]},')
        out.write(flow * 400_000)  # ~20 MB
        out.write(flow[:-1] + "]")
    tracemalloc.start()
    try:
        with FlowFile(path) as flow_file, pytest.raises(BadFlowError, match="malformed JSON"):
            list(flow_file.records())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak  # the file is 20 MB; the scan window 1 MB
