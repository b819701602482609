"""The worker pool's roster: which worker processes exist, starting, replacing and stopping
them — the part ``WorkerPool`` owns for processes coming and going."""

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
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from pipeline_core.engine.executors.workers.exits import StartFailures, exit_reason
from pipeline_core.engine.executors.workers.link import Assignment, WorkerLink
from pipeline_core.engine.executors.workers.spawn import ZygoteClient, start_fresh_worker
from pipeline_core.errors import ConfigurationError
from pipeline_core.metrics import Metrics

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
    """The processes of a worker pool: the zygote, the workers it forks, and fresh
    interpreters for ``executor: process`` tries — starting, replacing, growing and stopping
    them. The pool that owns it hands the tries out; the roster tells it when a worker may
    take one (``on_free``) and when none can ever start (``on_broken``). Both share the
    pool's lock and its selector, on the pool's supervisor thread."""

    def __init__(
        self,
        settings: PoolSettings,
        metrics: Metrics,
        lock: threading.RLock,
        selector: selectors.BaseSelector,
        on_free: Callable[[], None],
        on_broken: Callable[[str], None],
    ) -> None:
        self.settings, self.metrics = settings, metrics
        self.lock, self.selector = lock, selector
        self.on_free, self.on_broken = on_free, on_broken
        self.workers: dict[int, WorkerLink] = {}
        self.starting: dict[int, socket.socket] = {}
        self.zygote: ZygoteClient | None = None
        self.failures = StartFailures()
        self.stopping = False
        self.started = threading.Event()
        self.start_error: str | None = None
        self.next_housekeeping = 0.0
        self._tokens = itertools.count(1)

    def idle_worker(self) -> WorkerLink | None:
        """A forked worker waiting for a try (under the lock)."""
        return next((w for w in self.workers.values() if w.idle and not w.process), None)

    def stats(self) -> tuple[int, int]:
        """(busy, idle) workers."""
        with self.lock:
            busy = sum(1 for w in self.workers.values() if w.current is not None)
            return busy, sum(1 for w in self.workers.values() if w.idle)

    def worker_exited(self, pid: int, code: int) -> None:
        worker = self.workers.pop(pid, None)
        _kill_group(pid, signal.SIGKILL)  # whatever the try left in its group goes too
        if worker is None:
            return
        self.close(worker)
        assignment = worker.current
        if not worker.ready:
            self.failures.failed(f"{exit_reason(code)} while starting")
            if self.failures.broken is not None:
                self.start_error = self.start_error or self.failures.broken
                self.started.set()
                self.on_broken(self.failures.broken)
        elif assignment is not None or not worker.closing:
            self.metrics.counter("worker.restarts")
        self.next_housekeeping = 0.0  # replace it at once
        if assignment is not None:
            reason = exit_reason(code, assignment.job.task)
            if not assignment.stopped():
                self.metrics.counter(
                    "task.killed", reason="limit" if "limit" in reason else "crash"
                )
            assignment.fail(reason)
        self.on_free()

    def zygote_died(self) -> None:
        """The fork server went away (its workers with it): fail their tries, start anew."""
        assert self.zygote is not None
        logger.error("the worker zygote exited (code %s); starting a new one",
                     self.zygote.process.poll())  # fmt: skip
        self.selector.unregister(self.zygote.socket)
        self.zygote.close()
        self.zygote = None
        with self.lock:
            forked = [w for w in self.workers.values() if w.process is None]
            for worker in forked:
                self.workers.pop(worker.pid)
                _kill_group(worker.pid, signal.SIGKILL)
                self.close(worker)
                if worker.current is not None:
                    worker.current.fail("the worker pool's zygote died")
            self.starting.clear()
        try:
            self.start_zygote()
        except ConfigurationError as exc:
            with self.lock:
                self.failures.failed(exc.message)
                if self.failures.broken is not None:
                    self.on_broken(self.failures.broken)

    def start_zygote(self) -> None:
        self.zygote = ZygoteClient(self.settings.python, self.settings.preload)
        self.selector.register(self.zygote.socket, selectors.EVENT_READ, "zygote")
        with self.lock:
            for _ in range(self.settings.size):
                self._spawn_locked()

    def spawned(self, token: int, pid: int) -> None:
        """The zygote forked the worker asked for as ``token`` (under the lock)."""
        sock = self.starting.pop(token, None)
        if sock is not None:
            self.workers[pid] = worker = WorkerLink(pid, Connection(sock.detach()))
            self.selector.register(worker.connection, selectors.EVENT_READ, worker)

    def _spawn_locked(self) -> None:
        if self.zygote is None or self.stopping or self.failures.retry_in():
            return
        token = next(self._tokens)
        try:
            self.starting[token] = self.zygote.spawn(token)
        except OSError as exc:
            logger.error("cannot ask the zygote for a worker: %s", exc)

    def start_fresh_locked(self, fresh: deque[Assignment]) -> None:
        """A fresh interpreter for each of ``fresh`` (tries of ``executor: process``)."""
        while fresh:
            assignment = fresh.popleft()
            if assignment.stopped():
                continue
            try:
                process, connection = start_fresh_worker(self.settings.python)
            except OSError as exc:
                assignment.fail(f"cannot start a task process: {exc}")
                continue
            worker = WorkerLink(process.pid, connection, process=process, pending=assignment)
            self.workers[process.pid] = worker
            self.selector.register(connection, selectors.EVENT_READ, worker)
            assignment.attach(process.pid)  # a stop reaches it while it starts too

    def housekeep_locked(self, waiting: bool) -> None:
        """Replace missing workers, let idle extra ones go, and grow when tries wait."""
        live = sum(1 for w in self.workers.values() if not w.closing and not w.process)
        for _ in range(self.settings.size - live - len(self.starting)):
            self._spawn_locked()
        idle = [w for w in self.workers.values() if w.idle and not w.process]
        now = time.monotonic()
        for worker in idle[self.settings.size :]:
            if now - worker.idle_since >= self.settings.idle_timeout:
                self.close(worker)  # its loop ends; the zygote reports the exit
        if waiting:
            self._grow_locked()

    def _grow_locked(self) -> None:
        """One more worker when tries wait and every worker has been busy with its current
        try for ``grow_after`` (none starting already)."""
        if self.starting or len(self.workers) >= self.settings.max_size:
            return
        since = time.monotonic() - self.settings.grow_after
        forked = [w for w in self.workers.values() if w.process is None and not w.closing]
        if all(w.current is not None and w.busy_since <= since for w in forked):
            self._spawn_locked()

    def shutdown(self) -> None:
        with self.lock:
            for worker in self.workers.values():
                _kill_group(worker.pid, signal.SIGKILL)
                self.close(worker)
                if worker.process is not None:
                    worker.process.wait()
            self.workers.clear()
            for sock in self.starting.values():
                sock.close()
            self.starting.clear()
        if self.zygote is not None:
            self.zygote.close()  # the zygote kills whatever is left and exits

    def close(self, worker: WorkerLink) -> None:
        if not worker.gone:
            self.selector.unregister(worker.connection)
        worker.close()


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
