"""Task logs: timestamped lines buffered per try and appended to the store in chunks, and a
router that sends what a thread-run task prints to its own log.

A line reaches the store within about ``FLUSH_SECONDS`` of being written even when the task
writes nothing after it (a follower of the log sees it then): ``_FLUSHER`` looks at the open
logs of its process twice a second."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import weakref
from typing import Protocol, TextIO

from pipeline_core.model import TaskKey, iso, utcnow

FLUSH_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0


class LogSink(Protocol):
    """Where a try's log text goes (the store, masked; or a worker's connection)."""

    def append_log(self, key: TaskKey, try_number: int, text: str) -> None: ...


class TaskLog:
    """One try's log. ``write`` accepts raw text (split into timestamped lines); lines reach
    the store every 64 KiB or second, and on ``close``. Never raises into the task."""

    def __init__(self, task_data: LogSink, key: TaskKey, try_number: int) -> None:
        self.task_data, self.key, self.try_number = task_data, key, try_number
        self._buffer: list[str] = []
        self._size = 0
        self._partial = ""
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        _FLUSHER.watch(self)

    def info(self, message: str) -> None:
        self.write(message if message.endswith("\n") else message + "\n")

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            stamp = iso(utcnow())
            for line in lines:
                entry = f"[{stamp}] {line}\n"
                self._buffer.append(entry)
                self._size += len(entry)
            if self._size >= FLUSH_BYTES or time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                self._flush_locked()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def flush_if_due(self) -> None:
        """Flush lines that have waited ``FLUSH_SECONDS`` (the flusher's call)."""
        with self._lock:
            if self._buffer and time.monotonic() - self._last_flush >= FLUSH_SECONDS:
                self._flush_locked()

    def close(self) -> None:
        _FLUSHER.forget(self)
        with self._lock:
            if self._partial:
                self._buffer.append(f"[{iso(utcnow())}] {self._partial}\n")
                self._partial = ""
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        text, self._buffer, self._size = "".join(self._buffer), [], 0
        try:
            self.task_data.append_log(self.key, self.try_number, text)
        except Exception as exc:  # a log that cannot be written must not fail the task
            # Not through logging: this thread's stderr may be routed back into this very log.
            if sys.__stderr__ is not None:
                sys.__stderr__.write(
                    f"pipeline-core: could not write the log of {self.key}: {exc}\n"
                )


class _Flusher:
    """The open logs of this process, flushed when due by one daemon thread, started on the
    first log (again in a forked worker, whose parent's thread did not survive the fork)."""

    INTERVAL = FLUSH_SECONDS / 2

    def __init__(self) -> None:
        self._logs: weakref.WeakSet[TaskLog] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._pid = 0

    def watch(self, log: TaskLog) -> None:
        with self._lock:
            self._logs.add(log)
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="task-log-flush", daemon=True).start()

    def forget(self, log: TaskLog) -> None:
        with self._lock:
            self._logs.discard(log)

    def _run(self) -> None:
        while True:
            time.sleep(self.INTERVAL)
            with self._lock:
                logs = list(self._logs)
            for log in logs:
                log.flush_if_due()


_FLUSHER = _Flusher()


class _RoutedStream(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: text written by a thread that runs a task goes
    to that task's log; everything else goes to the original stream."""

    def __init__(self, original: TextIO, targets: threading.local) -> None:
        self.original, self.targets = original, targets

    def write(self, text: str) -> int:
        log: TaskLog | None = getattr(self.targets, "log", None)
        if log is not None:
            return log.write(text)
        return self.original.write(text)

    def flush(self) -> None:
        self.original.flush()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")


class OutputRouter:
    """Installs routed stdout/stderr once; ``capture(log)`` routes the calling thread."""

    def __init__(self) -> None:
        self._targets = threading.local()
        self._installed = 0
        self._lock = threading.Lock()
        self._saved: tuple[TextIO, TextIO] | None = None

    def install(self) -> None:
        with self._lock:
            self._installed += 1
            if self._installed == 1:
                self._saved = (sys.stdout, sys.stderr)
                sys.stdout = _RoutedStream(sys.stdout, self._targets)
                sys.stderr = _RoutedStream(sys.stderr, self._targets)

    def uninstall(self) -> None:
        with self._lock:
            self._installed -= 1
            if self._installed == 0 and self._saved is not None:
                sys.stdout, sys.stderr = self._saved
                self._saved = None

    def route(self, log: TaskLog | None) -> None:
        self._targets.log = log


ROUTER = OutputRouter()
