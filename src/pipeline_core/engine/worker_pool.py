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
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pipeline_core.engine import worker_wire as wire
from pipeline_core.engine.worker_exits import StartFailures, exit_reason
from pipeline_core.engine.worker_link import Assignment, WorkerLink
from pipeline_core.engine.worker_spawn import START_TIMEOUT, ZygoteClient, start_fresh_worker
from pipeline_core.errors import ConfigurationError
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.store.base import Store

__all__ = ["Assignment", "PoolSettings", "WorkerPool"]
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


class WorkerPool:
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
        self._thread = threading.Thread(target=self._supervise, name="worker-pool", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------
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

    # --- submitting -----------------------------------------------------------------------
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

    def _grow_locked(self) -> None:
        """One more worker when tries wait and every worker has been busy with its current
        try for ``grow_after`` (none starting already)."""
        if not self._queue or self._starting or len(self._workers) >= self.settings.max_size:
            return
        since = time.monotonic() - self.settings.grow_after
        forked = [w for w in self._workers.values() if w.process is None and not w.closing]
        if all(w.current is not None and w.busy_since <= since for w in forked):
            self._spawn_locked()

    # --- the supervisor thread ----------------------------------------------------------------
    def _supervise(self) -> None:
        try:
            self._start_zygote()
        except ConfigurationError as exc:
            self._start_error = exc.message
            self._started.set()
            self._shutdown()
            return
        while not self._stopping:
            self._step()
        self._shutdown()

    def _start_zygote(self) -> None:
        self._zygote = ZygoteClient(self.settings.python, self.settings.preload)
        self._selector.register(self._zygote.socket, selectors.EVENT_READ, "zygote")
        with self._lock:
            for _ in range(self.settings.size):
                self._spawn_locked()

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

    # --- workers coming and going ---------------------------------------------------------
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

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _report_gauges(self) -> None:
        busy, idle = self.stats()
        self.metrics.gauge("workers.busy", busy)
        self.metrics.gauge("workers.idle", idle)


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
