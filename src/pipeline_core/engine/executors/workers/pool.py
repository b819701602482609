"""The warm worker pool: long-lived worker processes forked from a pre-imported zygote, so a
try costs a message round trip instead of an interpreter start.

``size`` workers are kept started; when every worker is busy the pool forks more, up to
``max_size``, and lets the extra ones go after ``idle_timeout``. Tries of ``executor:
process`` get a fresh interpreter each, speaking the same protocol. One supervisor thread
owns every connection and turns a ``done``, or a worker's death, into the try's
``Completion``. A worker that dies fails only its own try and is replaced.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import selectors
import socket
import sys
import threading
import time
from collections import deque
from typing import Any

from pipeline_core.engine.executors.workers import wire
from pipeline_core.engine.executors.workers.link import Assignment, WorkerLink
from pipeline_core.engine.executors.workers.roster import (
    HOUSEKEEPING_INTERVAL,
    PoolSettings,
    WorkerRoster,
)
from pipeline_core.engine.executors.workers.spawn import START_TIMEOUT
from pipeline_core.errors import ConfigurationError
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine")
__all__ = ["Assignment", "PoolSettings", "WorkerPool"]


class WorkerPool:
    """Tries handed to warm workers: the queue of tries waiting, and the supervisor thread
    that owns every connection. Its ``roster`` keeps the processes."""

    def __init__(
        self, store: Store, settings: PoolSettings, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics: Metrics = metrics or NullMetrics()
        self._lock = threading.RLock()
        self._queue: deque[Assignment] = deque()
        self._fresh: deque[Assignment] = deque()  # waiting for an interpreter of their own
        self._tokens = itertools.count(1)
        self._dags: dict[int, tuple[Any, int, bytes]] = {}
        self._runs: dict[int, tuple[Any, bytes]] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.roster = WorkerRoster(
            settings, self.metrics, self._lock, self._selector, self._assign_locked, self._fail_all
        )
        self._thread = threading.Thread(target=self._supervise, name="worker-pool", daemon=True)

    def start(self) -> WorkerPool:
        """Start the zygote and ``size`` workers; ``ConfigurationError`` if they cannot."""
        roster = self.roster
        self._thread.start()
        if not roster.started.wait(START_TIMEOUT):
            roster.start_error = f"workers did not start within {START_TIMEOUT:g}s"
        if roster.start_error is not None:
            self.stop()
            raise ConfigurationError(f"the worker pool cannot start: {roster.start_error}")
        return self

    def stop(self) -> None:
        """Kill every worker (with whatever its try started) and the zygote."""
        with self._lock:
            self.roster.stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def stats(self) -> tuple[int, int]:
        """(busy, idle) workers."""
        return self.roster.stats()

    def submit(self, assignment: Assignment) -> None:
        with self._lock:
            broken = self.roster.failures.broken
            if broken is not None:
                assignment.fail(f"no worker can start: {broken}")
            elif assignment.fresh:
                self._fresh.append(assignment)
                self._wake()
            else:
                self._queue.append(assignment)
                self._assign_locked()
                if len(self._queue) == 1:
                    self._wake()  # the supervisor decides when the pool grows

    def _assign_locked(self) -> None:
        while self._queue:
            worker = self.roster.idle_worker()
            if worker is None:
                break
            self._send_locked(worker, self._queue.popleft())

    def _fail_all(self, broken: str) -> None:
        """No worker can start: every waiting try fails, naming why (under the lock)."""
        while self._queue:
            self._queue.popleft().fail(f"no worker can start: {broken}")

    def _send_locked(self, worker: WorkerLink, assignment: Assignment) -> None:
        if assignment.stopped():
            return
        try:
            job = assignment.job
            worker.send(assignment, self._dag_token(job.dag), self._run_bytes(job.run), sys.path)
        except Exception as exc:  # nothing ran: the try fails, naming why
            worker.current = None
            assignment.fail(f"cannot send the task to a worker: {exc}")
            return
        assignment.attach(worker.pid)

    def _dag_token(self, dag: Any) -> tuple[int, bytes]:
        """One pickled copy per DAG version (DAGs are immutable: the object is the version)."""
        cached = self._dags.get(id(dag))
        if cached is None or cached[0] is not dag:
            cached = (dag, next(self._tokens), wire.dumps_definition(dag))
            self._dags[id(dag)] = cached
            if len(self._dags) > 4 * wire.KEEP_DAGS:
                self._dags.pop(next(iter(self._dags)))
        return cached[1], cached[2]

    def _run_bytes(self, run: Any) -> bytes:
        """A run pickled once per version (runs are immutable: the object is the version)."""
        cached = self._runs.get(id(run))
        if cached is None or cached[0] is not run:
            cached = (run, wire.dumps(run))
            self._runs[id(run)] = cached
            if len(self._runs) > 1024:
                self._runs.pop(next(iter(self._runs)))
        return cached[1]

    def _supervise(self) -> None:
        roster = self.roster
        try:
            roster.start_zygote()
        except ConfigurationError as exc:
            roster.start_error = exc.message
            roster.started.set()
            self._shutdown()
            return
        while not roster.stopping:
            try:
                self._step()
            except Exception:  # the one thread every try depends on must not end
                logger.exception("the worker pool's supervisor hit an error; going on")
                time.sleep(0.1)
        self._shutdown()

    def _shutdown(self) -> None:
        self.roster.shutdown()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _step(self) -> None:
        roster = self.roster
        timeout = min(self.settings.idle_timeout, roster.failures.retry_in() or 1.0)
        if self._queue:
            timeout = min(timeout, self.settings.grow_after)
        for key, _ in self._selector.select(max(0.01, timeout)):
            if key.data == "zygote":
                self._on_zygote()
            elif key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            else:
                self._on_worker(key.data)
        now = time.monotonic()
        if self._fresh or now >= roster.next_housekeeping:
            roster.next_housekeeping = now + HOUSEKEEPING_INTERVAL
            with self._lock:
                roster.start_fresh_locked(self._fresh)
                roster.housekeep_locked(waiting=bool(self._queue))
                self._report_gauges()

    def _on_zygote(self) -> None:
        roster = self.roster
        assert roster.zygote is not None
        message = roster.zygote.receive()
        if message is None:
            roster.zygote_died()
            return
        with self._lock:
            if "spawned" in message:
                roster.spawned(message["spawned"], message["pid"])
            elif "exited" in message:
                roster.worker_exited(message["exited"], message["code"])

    def _on_worker(self, worker: WorkerLink) -> None:
        """The worker's next message (the selector reports it again while more are there)."""
        if worker.gone:
            return
        try:
            message = wire.loads(worker.connection.recv_bytes())
        except (EOFError, OSError):
            self.roster.close(worker)  # its exit status says why
            if worker.process is not None:  # ours to reap
                with self._lock:
                    self.roster.worker_exited(worker.pid, worker.process.wait())
            return
        self._on_message(worker, message)

    def _on_message(self, worker: WorkerLink, message: tuple[Any, ...]) -> None:
        if message[0] == wire.READY:
            with self._lock:
                worker.ready = True
                if worker.process is None:
                    self.roster.failures.started()
                    self.roster.started.set()
                elif worker.pending is not None:
                    self._send_locked(worker, worker.pending)
                    worker.pending = None
                self._assign_locked()
            return
        assignment = worker.current
        completion = worker.handle(message, self.store, self.metrics)
        if completion is None or assignment is None:
            return
        limit = self.settings.max_tasks_per_worker
        if worker.process is not None:
            worker.closing = True  # a fresh interpreter serves one try, then exits
        elif limit and worker.tries >= limit:
            self.roster.close(worker)  # recycled: its loop ends and the zygote reports the exit
        with self._lock:
            self._assign_locked()  # the next try first: the worker waits for nothing else
        assignment.finish(completion)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _report_gauges(self) -> None:
        busy, idle = self.stats()
        self.metrics.gauge("workers.busy", busy)
        self.metrics.gauge("workers.idle", idle)
