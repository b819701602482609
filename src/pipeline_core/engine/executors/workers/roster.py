"""The worker pool's roster: which worker processes exist, starting, replacing and stopping
them — the half of ``WorkerPool`` that deals with processes coming and going."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pipeline_core.engine.executors.workers.exits import StartFailures, exit_reason
from pipeline_core.engine.executors.workers.link import Assignment, WorkerLink
from pipeline_core.engine.executors.workers.spawn import ZygoteClient, start_fresh_worker
from pipeline_core.errors import ConfigurationError
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine.workers")
#: How often the supervisor replaces missing workers, lets idle ones go and reports gauges.
HOUSEKEEPING_INTERVAL = 0.01


@dataclass(frozen=True)
class PoolSettings:
    size: int = 2
    max_size: int = 32
    #: Replace a worker after this many tries (0: never).
    max_tasks_per_worker: int = 0
    idle_timeout: float = 60.0
    #: When every worker has been busy with its try for this long and tries are waiting, the
    #: pool forks one more worker (one at a time): short tries are served faster by the
    #: workers there are, long ones need more.
    grow_after: float = 0.05
    #: Modules the zygote imports before forking, so that every worker starts with them.
    preload: tuple[str, ...] = ()
    python: str = sys.executable


class WorkerRoster:
    """The processes of a worker pool; ``WorkerPool`` hands them tries."""

    def __init__(
        self, store: Store, settings: PoolSettings, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics: Metrics = metrics or NullMetrics()
        self._lock = threading.RLock()
        self._workers: dict[int, WorkerLink] = {}
        self._starting: dict[int, socket.socket] = {}
        self._queue: deque[Assignment] = deque()
        self._fresh: deque[Assignment] = deque()  # waiting for an interpreter of their own
        self._tokens = itertools.count(1)
        self._dags: dict[int, tuple[Any, int, bytes]] = {}
        self._runs: dict[int, tuple[Any, bytes]] = {}
        self._failures = StartFailures()
        self._zygote: ZygoteClient | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopping = False
        self._started = threading.Event()
        self._start_error: str | None = None
        self._next_housekeeping = 0.0

    def _assign_locked(self) -> None:
        """Hand waiting tries to idle workers (``WorkerPool``)."""
        raise NotImplementedError

    def _worker_exited(self, pid: int, code: int) -> None:
        worker = self._workers.pop(pid, None)
        _kill_group(pid, signal.SIGKILL)  # whatever the try left in its group goes too
        if worker is None:
            return
        self._close(worker)
        assignment = worker.current
        if not worker.ready:
            self._failures.failed(f"{exit_reason(code)} while starting")
            if self._failures.broken is not None:
                self._start_error = self._start_error or self._failures.broken
                self._started.set()
                self._fail_waiting_locked()
        elif assignment is not None or not worker.closing:
            self.metrics.counter("worker.restarts")
        self._next_housekeeping = 0.0  # replace it at once
        if assignment is not None:
            reason = exit_reason(code, assignment.job.task)
            if not assignment.stopped():
                self.metrics.counter(
                    "task.killed", reason="limit" if "limit" in reason else "crash"
                )
            assignment.fail(reason)
        self._assign_locked()

    def _zygote_died(self) -> None:
        """The fork server went away (its workers with it): fail their tries, start anew."""
        assert self._zygote is not None
        logger.error("the worker zygote exited (code %s); starting a new one",
                     self._zygote.process.poll())  # fmt: skip
        self._selector.unregister(self._zygote.socket)
        self._zygote.close()
        self._zygote = None
        with self._lock:
            forked = [w for w in self._workers.values() if w.process is None]
            for worker in forked:
                self._workers.pop(worker.pid)
                _kill_group(worker.pid, signal.SIGKILL)
                self._close(worker)
                if worker.current is not None:
                    worker.current.fail("the worker pool's zygote died")
            self._starting.clear()
        try:
            self._start_zygote()
        except ConfigurationError as exc:
            with self._lock:
                self._failures.failed(exc.message)
                self._fail_waiting_locked()

    def _start_zygote(self) -> None:
        self._zygote = ZygoteClient(self.settings.python, self.settings.preload)
        self._selector.register(self._zygote.socket, selectors.EVENT_READ, "zygote")
        with self._lock:
            for _ in range(self.settings.size):
                self._spawn_locked()

    def _spawn_locked(self) -> None:
        if self._zygote is None or self._stopping or self._failures.retry_in():
            return
        token = next(self._tokens)
        try:
            self._starting[token] = self._zygote.spawn(token)
        except OSError as exc:
            logger.error("cannot ask the zygote for a worker: %s", exc)

    def _start_fresh_locked(self) -> None:
        while self._fresh:
            assignment = self._fresh.popleft()
            if assignment.stopped():
                continue
            try:
                process, connection = start_fresh_worker(self.settings.python)
            except OSError as exc:
                assignment.fail(f"cannot start a task process: {exc}")
                continue
            worker = WorkerLink(process.pid, connection, process=process, pending=assignment)
            self._workers[process.pid] = worker
            self._selector.register(connection, selectors.EVENT_READ, worker)
            assignment.attach(process.pid)  # a stop reaches it while it starts too

    def _housekeep_locked(self) -> None:
        live = sum(1 for w in self._workers.values() if not w.closing and not w.process)
        for _ in range(self.settings.size - live - len(self._starting)):
            self._spawn_locked()
        idle = [w for w in self._workers.values() if w.idle and not w.process]
        now = time.monotonic()
        for worker in idle[self.settings.size :]:
            if now - worker.idle_since >= self.settings.idle_timeout:
                self._close(worker)  # its loop ends; the zygote reports the exit
        self._grow_locked()

    def _grow_locked(self) -> None:
        """One more worker when tries wait and every worker has been busy with its current
        try for ``grow_after`` (none starting already)."""
        if not self._queue or self._starting or len(self._workers) >= self.settings.max_size:
            return
        since = time.monotonic() - self.settings.grow_after
        forked = [w for w in self._workers.values() if w.process is None and not w.closing]
        if all(w.current is not None and w.busy_since <= since for w in forked):
            self._spawn_locked()

    def _fail_waiting_locked(self) -> None:
        if self._failures.broken is None:
            return
        while self._queue:
            self._queue.popleft().fail(f"no worker can start: {self._failures.broken}")

    def _shutdown(self) -> None:
        with self._lock:
            for worker in self._workers.values():
                _kill_group(worker.pid, signal.SIGKILL)
                self._close(worker)
                if worker.process is not None:
                    worker.process.wait()
            self._workers.clear()
            for sock in self._starting.values():
                sock.close()
            self._starting.clear()
        if self._zygote is not None:
            self._zygote.close()  # the zygote kills whatever is left and exits
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _close(self, worker: WorkerLink) -> None:
        if not worker.gone:
            self._selector.unregister(worker.connection)
        worker.close()


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
