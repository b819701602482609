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
import logging
import selectors
import sys
import threading
import time
from multiprocessing.connection import Connection
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
from pipeline_core.metrics import Metrics
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine")
__all__ = ["Assignment", "PoolSettings", "WorkerPool"]


class WorkerPool(WorkerRoster):
    def __init__(
        self, store: Store, settings: PoolSettings, metrics: Metrics | None = None
    ) -> None:
        super().__init__(store, settings, metrics)
        self._thread = threading.Thread(target=self._supervise, name="worker-pool", daemon=True)

    def start(self) -> WorkerPool:
        """Start the zygote and ``size`` workers; ``ConfigurationError`` if they cannot."""
        self._thread.start()
        if not self._started.wait(START_TIMEOUT):
            self._start_error = f"workers did not start within {START_TIMEOUT:g}s"
        if self._start_error is not None:
            self.stop()
            raise ConfigurationError(f"the worker pool cannot start: {self._start_error}")
        return self

    def stop(self) -> None:
        """Kill every worker (with whatever its try started) and the zygote."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def stats(self) -> tuple[int, int]:
        """(busy, idle) workers."""
        with self._lock:
            busy = sum(1 for w in self._workers.values() if w.current is not None)
            return busy, sum(1 for w in self._workers.values() if w.idle)

    def submit(self, assignment: Assignment) -> None:
        with self._lock:
            if self._failures.broken is not None:
                assignment.fail(f"no worker can start: {self._failures.broken}")
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
            worker = next((w for w in self._workers.values() if w.idle and not w.process), None)
            if worker is None:
                break
            self._send_locked(worker, self._queue.popleft())

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
        try:
            self._start_zygote()
        except ConfigurationError as exc:
            self._start_error = exc.message
            self._started.set()
            self._shutdown()
            return
        while not self._stopping:
            try:
                self._step()
            except Exception:  # the one thread every try depends on must not end
                logger.exception("the worker pool's supervisor hit an error; going on")
                time.sleep(0.1)
        self._shutdown()

    def _step(self) -> None:
        timeout = min(self.settings.idle_timeout, self._failures.retry_in() or 1.0)
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
        if self._fresh or now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_INTERVAL
            with self._lock:
                self._start_fresh_locked()
                self._housekeep_locked()
                self._report_gauges()

    def _on_zygote(self) -> None:
        assert self._zygote is not None
        message = self._zygote.receive()
        if message is None:
            self._zygote_died()
            return
        with self._lock:
            if "spawned" in message:
                sock = self._starting.pop(message["spawned"], None)
                if sock is not None:
                    pid = message["pid"]
                    self._workers[pid] = worker = WorkerLink(pid, Connection(sock.detach()))
                    self._selector.register(worker.connection, selectors.EVENT_READ, worker)
            elif "exited" in message:
                self._worker_exited(message["exited"], message["code"])

    def _on_worker(self, worker: WorkerLink) -> None:
        """The worker's next message (the selector reports it again while more are there)."""
        if worker.gone:
            return
        try:
            message = wire.loads(worker.connection.recv_bytes())
        except (EOFError, OSError):
            self._close(worker)  # its exit status says why
            if worker.process is not None:  # ours to reap
                with self._lock:
                    self._worker_exited(worker.pid, worker.process.wait())
            return
        self._on_message(worker, message)

    def _on_message(self, worker: WorkerLink, message: tuple[Any, ...]) -> None:
        if message[0] == wire.READY:
            with self._lock:
                worker.ready = True
                if worker.process is None:
                    self._failures.started()
                    self._started.set()
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
            self._close(worker)  # recycled: its loop ends and the zygote reports the exit
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
