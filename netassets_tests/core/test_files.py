"""Atomic writes under contention: two processes promoting to one file never corrupt it."""

import multiprocessing
import os
from pathlib import Path

import pytest

from netassets.core.files import atomic_write, copy_file

SIZE = 2 * 1024 * 1024
TRIES = 40


def _promote_many(source: str, target: str, tries: int) -> None:
    for _ in range(tries):
        copy_file(Path(source), Path(target))


@pytest.mark.fault("two processes promoting to one production file")
def test_two_processes_promoting_to_one_target_leave_one_whole_file(tmp_path: Path):
    sources = []
    for letter in (b"a", b"b"):
        source = tmp_path / f"candidate-{letter.decode()}.bin"
        source.write_bytes(letter * SIZE)
        sources.append(source)
    target = tmp_path / "production" / "model.bin"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_promote_many, args=(str(s), str(target), TRIES)) for s in sources]
    for writer in writers:
        writer.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        if target.exists():
            content = target.read_bytes()
            assert len(content) == SIZE and content in (b"a" * SIZE, b"b" * SIZE), "a reader saw a mixed or partial file"
            reads += 1
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert target.read_bytes() in (b"a" * SIZE, b"b" * SIZE)
    assert reads > 0
    assert not [p.name for p in target.parent.iterdir() if p.name != "model.bin"], "temporary files were left behind"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def explode(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_written_files_are_readable_like_any_other_output(tmp_path: Path):
    path = atomic_write(tmp_path / "x.bin", lambda handle: handle.write(b"1"))
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
