"""MirroredComputeLogManager (deploy/dagster.yaml's compute_logs): a real run in a fresh
interpreter whose stdout and stderr are pipes, as a terminal or the daemon's log would be; the
captured files are read back through the instance, as the UI reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import yaml

from netassets.core import compute_logs
from netassets.core.compute_logs import MirroredComputeLogManager, mirrored_to_file
from netassets.core.settings import INSTANCE_SETTINGS

RUN = textwrap.dedent("""
    import json, os, subprocess, sys
    import dagster as dg

    started = []
    _popen_init = subprocess.Popen.__init__
    def recording_init(self, args, *rest, **kwargs):  # observes, changes nothing
        started.append(list(args) if isinstance(args, (list, tuple)) else [args])
        _popen_init(self, args, *rest, **kwargs)
    subprocess.Popen.__init__ = recording_init

    @dg.asset
    def chatty() -> None:
        print("stdout-from-python", flush=True)
        os.write(2, b"stderr-from-the-descriptor\\n")
        subprocess.run(["sh", "-c", "echo stdout-from-a-child"], check=True)

    with dg.DagsterInstance.get() as instance:
        result = dg.materialize([chatty], instance=instance)
        (captured,) = [e for e in result.all_events if e.event_type_value == "LOGS_CAPTURED"]
        log_key = instance.compute_log_manager.build_log_key_for_run(result.run_id, captured.event_specific_data.file_key)
        data = instance.compute_log_manager.get_log_data(log_key)
        report = {"success": result.success, "manager": type(instance.compute_log_manager).__name__,
                  "stdout_file": data.stdout.decode(), "stderr_file": data.stderr.decode(),
                  "complete": instance.compute_log_manager.is_capture_complete(log_key),
                  "started": [argv[0] for argv in started]}
    print("REPORT " + json.dumps(report), flush=True)
""")


def test_a_run_captures_its_output_in_files_and_mirrors_it_without_tail_processes(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load(INSTANCE_SETTINGS.read_text())
    assert settings["compute_logs"]["class"] == "MirroredComputeLogManager"
    (home / "dagster.yaml").write_text(yaml.safe_dump({"compute_logs": settings["compute_logs"]}))
    done = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DAGSTER_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.split("REPORT ", 1)[1])
    assert report["success"] and report["manager"] == "MirroredComputeLogManager" and report["complete"]
    # in the files the UI shows, under $DAGSTER_HOME/storage (Dagster's default place)
    assert "stdout-from-python" in report["stdout_file"] and "stdout-from-a-child" in report["stdout_file"]
    assert "stderr-from-the-descriptor" in report["stderr_file"]
    assert list((home / "storage").rglob("*.out"))
    # and on the terminal: each line once
    before_report = done.stdout.split("REPORT ", 1)[0]
    assert before_report.count("stdout-from-python") == 1 and before_report.count("stdout-from-a-child") == 1
    assert done.stderr.count("stderr-from-the-descriptor") == 1
    # the step's own child ran; no tail and no orphan-watching interpreter was started (Dagster's
    # manager starts both for each stream)
    assert "sh" in report["started"], report["started"]
    assert not {"tail", sys.executable} & set(report["started"]), report["started"]


def test_earlier_output_in_the_file_is_not_mirrored_again(tmp_path):
    path = tmp_path / "step.out"
    path.write_text("from-an-earlier-attempt\n")
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        with mirrored_to_file(stream, str(path)):
            os.write(stream.fileno(), b"from-this-attempt\n")
    with os.fdopen(read_end) as terminal:
        assert terminal.read() == "from-this-attempt\n"
    assert path.read_text() == "from-an-earlier-attempt\nfrom-this-attempt\n"


def test_a_terminal_that_is_gone_stops_the_mirror_not_the_capture(tmp_path):
    path = tmp_path / "step.out"
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads the terminal any more: writing to it fails with EPIPE
    with os.fdopen(write_end, "w") as stream:
        with mirrored_to_file(stream, str(path)):
            os.write(stream.fileno(), b"x" * 200_000)  # more than a pipe holds
    assert path.stat().st_size == 200_000
    assert not _mirror_threads()


def test_base_dir_defaults_to_dagster_homes_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert MirroredComputeLogManager()._base_dir == str(tmp_path / "storage")
    monkeypatch.delenv("DAGSTER_HOME")
    try:
        MirroredComputeLogManager()
    except ValueError as error:
        assert "DAGSTER_HOME" in str(error)
    else:
        raise AssertionError("no base_dir and no DAGSTER_HOME must be refused")


def _mirror_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "compute-log-mirror"]


def test_a_terminal_that_takes_nothing_is_given_up_and_its_descriptor_never_reused_under_the_mirror(tmp_path, monkeypatch):
    monkeypatch.setattr(compute_logs, "STOP_WAIT_S", 0.3)
    path = tmp_path / "step.out"
    read_end, write_end = os.pipe()  # a terminal nobody reads for now (a paused pager)
    started = time.monotonic()
    with os.fdopen(write_end, "w") as stream:
        with mirrored_to_file(stream, str(path)):
            os.write(stream.fileno(), b"x" * 1_000_000)  # far more than a pipe holds
    assert time.monotonic() - started < 5
    assert not _mirror_threads()
    assert path.stat().st_size == 1_000_000  # the file has it all
    # The descriptor numbers the mirror used are free again: the next file opened may get one.
    # Whatever the terminal's reader drains now, nothing more may land in that file.
    with open(tmp_path / "instance.db", "wb") as unrelated:
        unrelated.write(b"IMPORTANT")
        unrelated.flush()
        os.set_blocking(read_end, False)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            try:
                os.read(read_end, 1 << 16)
            except BlockingIOError:
                time.sleep(0.01)
    os.close(read_end)
    assert (tmp_path / "instance.db").read_bytes() == b"IMPORTANT"


def test_a_closed_terminal_does_not_kill_a_process_that_put_sigpipe_back_to_its_default(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys, time
        from netassets.core.compute_logs import mirrored_to_file
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as CLIs do, to end quietly under `| head`
        read_end, write_end = os.pipe()
        os.close(read_end)
        with os.fdopen(write_end, "w") as stream:
            with mirrored_to_file(stream, {str(tmp_path / "step.out")!r}):
                os.write(write_end, b"step output\\n")
                time.sleep(0.3)  # the mirror writes to the closed pipe meanwhile
        print("run finished", file=sys.stderr)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "run finished" in done.stderr, (done.returncode, done.stderr[-2000:])
    assert (tmp_path / "step.out").read_text() == "step output\n"


def test_a_file_truncated_during_the_capture_is_mirrored_again_from_its_start(tmp_path):
    path = tmp_path / "step.out"
    read_end, write_end = os.pipe()
    first = b"A" * 5000 + b"\n"
    with os.fdopen(write_end, "w") as stream, os.fdopen(read_end, "rb", buffering=0) as terminal:
        with mirrored_to_file(stream, str(path)):
            os.write(write_end, first)
            mirrored = b""
            while len(mirrored) < len(first):  # the mirror has passed it on
                mirrored += terminal.read(len(first) - len(mirrored))
            os.truncate(path, 0)  # logrotate's copytruncate
            os.write(write_end, b"after-truncate\n")
        stream.close()
        assert mirrored + terminal.read() == first + b"after-truncate\n"
