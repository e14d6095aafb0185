"""A run's captured stdout and stderr, mirrored to the terminal by a thread: `MirroredComputeLogManager`.

Dagster's ``LocalComputeLogManager`` points a run worker's stdout and stderr at files (what the UI
shows under a step's logs) and mirrors each file back to the terminal with a ``tail -F`` process,
each watched by a Python process of its own that kills it should the worker die: four processes
started, and waited for, in every run. That was ~60 ms of a run's wall and two Python
interpreter starts on the other core (``bench.lens_clean``'s step that does no work: 0.26 ->
0.20 s), against runs of 0.3-1 s.

This manager writes the same files in the same places (the UI, ``dagster asset materialize``
and log retention see no difference) and mirrors them from a thread of the run worker that
reads what the file gained every ``MIRROR_POLL_S``. The output goes to the file first, as
before: a worker killed mid-run leaves its file complete up to the kill, and a thread, unlike
a ``tail`` process, cannot outlive it. What was in the file before the capture (a re-executed
step's earlier output) is not mirrored again. Configured in deploy/dagster.yaml::

    compute_logs:
      module: netassets.core.compute_logs
      class: MirroredComputeLogManager
      # config: {base_dir: ...}   default: $DAGSTER_HOME/storage, where Dagster's default keeps them
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from dagster import Field, Float, StringSource
from dagster._core.execution.compute_logs import _fileno, redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

MIRROR_POLL_S = 0.1  # tail -F looks once a second
# Once the capture has ended, how long the mirror may wait for a terminal that takes nothing (a
# paused pager, a log pipe nobody reads) before it gives up: the output is in the file anyway.
STOP_WAIT_S = 5.0
_CHUNK = 1 << 16


class _Mirror(threading.Thread):
    """Copies what ``path`` gains after ``start`` to the file descriptor ``terminal`` until
    stopped; then copies the rest, giving a blocked terminal STOP_WAIT_S. A terminal that is
    gone (closed pipe) ends the mirroring, never the run.

    The thread owns ``terminal`` and closes it when it ends, never before: closed by another
    thread while this one still wrote to it, the number could be reused by the next ``open`` and
    the rest of the output written there. Writes are at most PIPE_BUF bytes, each once ``poll``
    says the terminal takes one, so no write blocks past the deadline."""

    def __init__(self, path: str, terminal: int):
        super().__init__(name="compute-log-mirror", daemon=True)
        self.path, self.terminal = path, terminal
        self.start_at = os.path.getsize(path)
        self._stop_event = threading.Event()
        self._deadline: float | None = None  # set by stop()

    def run(self) -> None:
        # A write to a closed pipe then fails with EPIPE here instead of killing the process,
        # even where SIGPIPE has been put back to its default (it is a signal to this thread).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
        try:
            with open(self.path, "rb") as source:
                source.seek(self.start_at)
                while True:
                    stopping = self._stop_event.wait(MIRROR_POLL_S)
                    if os.fstat(source.fileno()).st_size < source.tell():
                        source.seek(0)  # truncated (logrotate's copytruncate): from its start again, as tail -F
                    while chunk := source.read(_CHUNK):
                        if not self._write(chunk):
                            return
                    if stopping:
                        return
        finally:
            os.close(self.terminal)

    def _write(self, chunk: bytes) -> bool:
        view = memoryview(chunk)
        ready = select.poll()
        ready.register(self.terminal, select.POLLOUT)
        try:
            while view:
                deadline = self._deadline
                wait_s = MIRROR_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
                if not ready.poll(wait_s * 1000):
                    if deadline is not None and time.monotonic() >= deadline:
                        return False
                    continue
                try:
                    view = view[os.write(self.terminal, view[:select.PIPE_BUF]):]
                except BlockingIOError:  # a terminal set non-blocking by someone else: poll again
                    continue
        except OSError:
            return False
        return True

    def stop(self) -> None:
        self._deadline = time.monotonic() + STOP_WAIT_S
        self._stop_event.set()
        self.join(timeout=STOP_WAIT_S + 1)


@contextmanager
def mirrored_to_file(stream: IO[Any], path: str) -> Iterator[None]:
    """``stream`` (and its file descriptor, so child processes' output too) appended to ``path``,
    and what it writes mirrored to where it pointed before."""
    ensure_file(path)
    fd = _fileno(stream)
    if fd is None:  # nothing at the descriptor level to redirect: Dagster's own code does nothing either
        with redirect_to_file(stream, path):
            yield
        return
    terminal = os.dup(fd)
    try:
        mirror = _Mirror(path, terminal)
        mirror.start()
    except BaseException:
        os.close(terminal)  # the thread that would own it never ran
        raise
    try:
        with redirect_to_file(stream, path):
            yield
    finally:
        mirror.stop()


class MirroredComputeLogManager(LocalComputeLogManager):
    """``LocalComputeLogManager`` whose mirror to the terminal is a thread, not two processes per stream."""

    def __init__(self, base_dir: str | None = None, polling_timeout: float | None = None,
                 inst_data: ConfigurableClassData | None = None):
        if base_dir is None:
            home = os.environ.get("DAGSTER_HOME")
            if not home:
                raise ValueError("MirroredComputeLogManager: no base_dir in its config and no DAGSTER_HOME to put "
                                 "captured logs under ($DAGSTER_HOME/storage)")
            base_dir = os.path.join(home, "storage")
        super().__init__(base_dir, polling_timeout=polling_timeout, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict:
        return {"base_dir": Field(StringSource, is_required=False), "polling_timeout": Field(Float, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: dict) -> MirroredComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        with mirrored_to_file(sys.stdout, outpath), mirrored_to_file(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # as Dagster's: the capture is complete
