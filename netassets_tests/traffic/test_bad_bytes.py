"""Bad bytes in every flow file format: each names the file and the 1-based line, quotes at most
a short escaped excerpt, or is skipped and counted; files outside the landing root and files that
change while read are refused; the landing sensor refuses links out of the landing root."""

import gzip
import json
import os
import re

import dagster as dg
import pytest

from netassets.core.files import EXCERPT_CHARS
from netassets.core.settings import landing_dir
from netassets.traffic import readers
from netassets.traffic.readers import BadFlowError, RefusedFileError, index_files

GOOD_CSV = b"[1,0,0.5,2],[0,1,0.25,3]\n"
GOOD_OBJ = json.dumps({"timestamp": [0.0, 0.5], "direction_length": [60, -60]}).encode()
# 256 bytes of binary junk: invalid UTF-8, control bytes, no newline
JUNK = bytes(range(0x80, 0x100)) + bytes(b for b in range(1, 32) if b != 0x0A) * 4
CTRL = bytes(b for b in range(1, 32) if b not in (0x0A, 0x09, 0x0D, 0x20)) * 10  # valid UTF-8, not JSON


def csv(bad: bytes) -> bytes:
    return GOOD_CSV + bad + b"\n" + GOOD_CSV


def jsonl(bad: bytes) -> bytes:
    return GOOD_OBJ + b"\n" + bad + b"\n" + GOOD_OBJ + b"\n"


def json_array(bad: bytes) -> bytes:
    return b"[\n" + GOOD_OBJ + b",\n" + bad + b",\n" + GOOD_OBJ + b"\n]\n"


# (case id, file name, bytes, reason, fragment of the message, line, usable flows when skipping
#  (None: none left, the whole scan is refused), whether the rest of the file is skipped)
CASES = [
    # ---- seed CSV: one flow per line, packets as JSON arrays
    ("csv-invalid_utf8", "f.csv", csv(b"[1,2,\xff\xfe,4]"), "invalid_utf8", "invalid UTF-8 at column 6", 2, 2, False),
    ("csv-nul_bytes", "f.csv", csv(b"[1,2,\x00\x00,4]"), "nul_byte", "NUL byte at column 6", 2, 2, False),
    ("csv-binary_junk_line", "f.csv", csv(JUNK), "invalid_utf8", "invalid UTF-8 at column 1", 2, 2, False),
    ("csv-control_junk_line", "f.csv", csv(CTRL), "malformed", "malformed JSON (Expecting value, column 1)", 2, 2, False),
    ("csv-gzip", "f.csv", gzip.compress(GOOD_CSV * 5), "compressed_file", "gzip-compressed data, not a .csv", 1, None, True),
    ("csv-truncated_line", "f.csv", GOOD_CSV + b"[1,2,3,4],[5,6", "malformed", "the record ends early (truncated?)", 2, 1, False),
    ("csv-header_only", "f.csv", b"direction,length,gap,flags\n", "malformed", "(a header line? .csv flow files have none)", 1, None, False),
    ("csv-zero_bytes", "f.csv", b"", "empty_file", "empty file (0 bytes): no flows", 1, None, False),
    ("csv-nan", "f.csv", csv(b"[1,NaN,3,4]"), "non_finite", "non-finite value nan at packet 1, feature 2", 2, 2, False),
    ("csv-infinity", "f.csv", csv(b"[1,2,3,4],[1,2,-Infinity,4]"), "non_finite", "non-finite value -inf at packet 2, feature 3", 2, 2, False),
    ("csv-number_beyond_float64", "f.csv", csv(b"[1,2,1" + b"0" * 400 + b",4]"), "non_finite", "too large for float64", 2, 2, False),
    ("csv-nested_too_deeply", "f.csv", csv(b"[" * 50_000), "malformed", "nested too deeply", 2, 2, False),
    ("csv-null", "f.csv", csv(b"[1,null,3,4]"), "non_numeric", "null value at packet 1, feature 2", 2, 2, False),
    # ---- CIC-DoH: one JSON array of flow objects
    ("json-invalid_utf8", "f.json", json_array(GOOD_OBJ[:5] + b"\xff" + GOOD_OBJ[5:]), "invalid_utf8", "invalid UTF-8 at column 6", 3, 2, False),
    ("json-nul_bytes", "f.json", json_array(b'{"timestamp": [0, \x00]}'), "nul_byte", "NUL byte at column 19", 3, 1, True),
    ("json-binary_junk", "f.json", json_array(JUNK), "invalid_utf8", "invalid UTF-8 at column 1", 3, 1, True),
    ("json-gzip", "f.json", gzip.compress(json_array(GOOD_OBJ)), "compressed_file", "gzip-compressed data, not a .json", 1, None, True),
    ("json-unterminated_array", "f.json", b"[\n" + GOOD_OBJ + b",\n" + GOOD_OBJ + b"\n", "truncated_file",
     "the JSON array ends before its closing ']'", 4, 2, True),
    ("json-unterminated_object", "f.json", b"[\n" + GOOD_OBJ + b",\n" + GOOD_OBJ[:20], "truncated_file",
     "the file ends inside the flow that starts on line 3", 3, 1, True),
    ("json-empty_array", "f.json", b"[]\n", "empty_file", "no flows in the file", 1, None, False),
    ("json-blank", "f.json", b" \n\n", "empty_file", "blank file: no flows", 1, None, False),
    ("json-zero_bytes", "f.json", b"", "empty_file", "empty file (0 bytes)", 1, None, False),
    ("json-not_an_array", "f.json", GOOD_OBJ, "malformed", "must hold a JSON array of flow objects", 1, None, True),
    ("json-nan", "f.json", json_array(b'{"timestamp": [0, NaN], "direction_length": [1, 2]}'), "non_finite",
     "non-finite value nan at packet 2, 'timestamp'", 3, 2, False),
    ("json-infinity", "f.json", json_array(b'{"timestamp": [0, 1], "direction_length": [1, Infinity]}'), "non_finite",
     "non-finite value inf at packet 2, 'direction_length'", 3, 2, False),
    # ---- JSONL: one flow object per line
    ("jsonl-invalid_utf8", "f.jsonl", jsonl(GOOD_OBJ[:5] + b"\xc3\x28" + GOOD_OBJ[5:]), "invalid_utf8",
     "invalid UTF-8 at column 6 (invalid continuation byte)", 2, 2, False),
    ("jsonl-nul_bytes", "f.jsonl", jsonl(b"\x00" * 300), "nul_byte", "NUL byte at column 1", 2, 2, False),
    ("jsonl-binary_junk_line", "f.jsonl", jsonl(JUNK), "invalid_utf8", "invalid UTF-8 at column 1", 2, 2, False),
    ("jsonl-gzip", "f.jsonl", gzip.compress(jsonl(GOOD_OBJ)), "compressed_file", "gzip-compressed data, not a .jsonl", 1, None, True),
    ("jsonl-truncated_object", "f.jsonl", GOOD_OBJ + b"\n" + GOOD_OBJ[:25], "malformed", "the record ends early (truncated?)", 2, 1, False),
    ("jsonl-zero_bytes", "f.jsonl", b"", "empty_file", "empty file (0 bytes)", 1, None, False),
    ("jsonl-nan", "f.jsonl", jsonl(b'{"timestamp": [NaN], "direction_length": [1]}'), "non_finite",
     "non-finite value nan at packet 1, 'timestamp'", 2, 2, False),
    ("jsonl-infinity", "f.jsonl", jsonl(b'{"timestamp": [0], "direction_length": [-Infinity]}'), "non_finite",
     "non-finite value -inf at packet 1, 'direction_length'", 2, 2, False),
]


def short_and_escaped(message: str, path) -> None:
    """At most one short quote: no raw control or binary bytes, no long run of the input."""
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\xff]", message), message
    rest = message.replace(str(path), "")
    quotes = re.findall(r"'((?:[^'\\]|\\.)*)'", rest)
    # each quote is the repr of at most EXCERPT_CHARS input characters (4 characters per escaped byte)
    assert all(len(q) <= 4 * EXCERPT_CHARS for q in quotes), quotes
    assert len(rest) < 400, rest


@pytest.mark.parametrize("name, data, reason, fragment, line, usable, rest_skipped",
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_bytes_name_file_and_line_or_are_skipped_and_counted(tmp_path, name, data, reason, fragment, line,
                                                                 usable, rest_skipped):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BadFlowError) as error:
        index_files([path], tmp_path)
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: ") and fragment in message, message
    assert error.value.reason == reason
    short_and_escaped(message, path)

    if usable is None:  # nothing usable left: refused as a whole, naming what was skipped
        with pytest.raises(BadFlowError, match=rf"no usable flows in 1 file\(s\) .*1 {reason}|no usable flows .*{reason}") as error:
            index_files([path], tmp_path, skip_bad=True)
        assert f"{path}:{line}: " in str(error.value)
        return
    index = index_files([path], tmp_path, skip_bad=True)
    assert len(index.frame) == usable
    assert dict(index.skipped) == {reason: 1}
    (example,) = index.skipped_examples
    assert example.startswith(f"{path}:{line}: ") and fragment in example
    assert example.endswith("; the rest of the file is skipped") == rest_skipped
    short_and_escaped(example, path)


def test_a_utf8_bom_is_not_bad_input(tmp_path):
    for name, body in (("f.csv", GOOD_CSV), ("f.jsonl", GOOD_OBJ + b"\n"), ("f.json", b"[" + GOOD_OBJ + b"]")):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + body)
        assert len(index_files([path], tmp_path).frame) == 1


def test_bad_bytes_found_while_training_name_file_and_line(tmp_path):
    """The worker reads flows back through the same reader: the same named, short errors."""
    path = tmp_path / "f.csv"
    path.write_bytes(GOOD_CSV + GOOD_CSV)
    with readers.FlowFile(path) as flow_file:
        (first, second) = flow_file.records()
    path.write_bytes(GOOD_CSV + JUNK[: len(GOOD_CSV) - 1] + b"\n")  # same size, now junk
    with readers.FlowFile(path) as flow_file, pytest.raises(BadFlowError, match=rf"^{path}:2: invalid UTF-8") as error:
        flow_file.read(second)
    short_and_escaped(str(error.value), path)


# ---- files outside the landing root, files changing while read -------------------------------

def test_file_leading_outside_the_landing_root_is_refused_unread(tmp_path, monkeypatch):
    root, outside = tmp_path / "landing", tmp_path / "elsewhere"
    (root / "site" / "2024-01-01").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.csv").write_bytes(GOOD_CSV)
    good = root / "site" / "2024-01-01" / "a.csv"
    good.write_bytes(GOOD_CSV)
    link = root / "site" / "2024-01-01" / "b.csv"
    link.symlink_to(outside / "secret.csv")
    opened = []
    monkeypatch.setattr(readers, "FlowFile", lambda path: opened.append(path))
    with pytest.raises(RefusedFileError, match=rf"^{link}: leads outside the landing root {root} "
                                               rf"\(resolves to {outside / 'secret.csv'}\); refused, not read$"):
        index_files([good, link], root, skip_bad=True)  # skipping bad flows does not let it through
    assert opened == []  # refused before any file was read

    # a day folder that is itself a link out of the landing root
    (root / "other").mkdir()
    (root / "other" / "2024-01-01").symlink_to(outside)
    with pytest.raises(RefusedFileError, match="leads outside the landing root"):
        index_files(readers.landing_files(root, readers.dt.date(2024, 1, 1), "other"), root)
    assert opened == []


def test_file_changing_while_read_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "f.csv"
    path.write_bytes(GOOD_CSV * 3)
    real_read = readers.FlowFile.read

    def read_while_a_writer_appends(self, record):
        if record.line == 2:
            with path.open("ab") as handle:
                handle.write(GOOD_CSV)
        return real_read(self, record)

    monkeypatch.setattr(readers.FlowFile, "read", read_while_a_writer_appends)
    for skip_bad in (False, True):
        with pytest.raises(RefusedFileError, match=rf"^{path}: changed while it was read .*nothing stored"):
            index_files([path], tmp_path, skip_bad=skip_bad)


def test_bad_bytes_from_a_file_still_being_written_are_reported_as_the_change(tmp_path, monkeypatch):
    path = tmp_path / "f.csv"
    path.write_bytes(GOOD_CSV + b"[1,2\n")  # the writer has not finished the line yet
    real_read = readers.FlowFile.read

    def read_then_writer_finishes(self, record):
        if record.line == 2:
            with path.open("ab") as handle:
                handle.write(b"more")
        return real_read(self, record)

    monkeypatch.setattr(readers.FlowFile, "read", read_then_writer_finishes)
    with pytest.raises(RefusedFileError, match="changed while it was read") as error:
        index_files([path], tmp_path)
    assert isinstance(error.value.__cause__, BadFlowError)  # the bad bytes stay visible as the cause


def test_landing_sensor_refuses_links_out_of_the_landing_root(netassets_home, tmp_path, instance):
    from netassets.defs.traffic.automation import traffic_landing_sensor

    root = landing_dir("traffic")
    good = root / "edge-a" / "2024-01-01"
    good.mkdir(parents=True)
    (good / "a.csv").write_bytes(GOOD_CSV)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.csv").write_bytes(GOOD_CSV)
    linked = root / "edge-b" / "2024-01-01"
    linked.mkdir(parents=True)
    (linked / "x.csv").symlink_to(outside / "x.csv")
    result = traffic_landing_sensor(dg.build_sensor_context(instance=instance))
    assert [r.partition_key for r in result.run_requests] == ["2024-01-01|edge-a"]
    os.unlink(linked / "x.csv")
    (linked / "x.csv").write_bytes(GOOD_CSV)  # a real file there is taken
    again = traffic_landing_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert [r.partition_key for r in again.run_requests] == ["2024-01-01|edge-b"]
