"""The warm worker pool: long-lived worker processes forked from a pre-imported zygote, so a
try costs a message round trip instead of an interpreter start.

``size`` workers are kept started; when every worker is busy the pool forks more, up to
``max_size``, and lets the extra ones go after ``idle_timeout``. One supervisor thread owns
every connection: it starts the zygote, answers the workers' XCom reads, writes their log
lines and XCom values to the store, and turns a ``done`` or a worker's death into the try's
``Completion``. A worker that dies fails only its own try, and is replaced.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from pipeline_core.engine import worker_wire as wire
from pipeline_core.engine.handlers import Result
from pipeline_core.engine.jobs import Completion, Job
from pipeline_core.engine.worker_exits import StartFailures, exit_reason
from pipeline_core.errors import ConfigurationError
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.store.base import Store
from pipeline_core.store.types import TaskKey

logger = logging.getLogger("pipeline_core.engine.workers")
START_TIMEOUT = 30.0
KEEP_DAGS = 64


@dataclass(frozen=True)
class PoolSettings:
    size: int = 2
    max_size: int = 32
    #: Replace a worker after this many tries (0: never).
    max_tasks_per_worker: int = 0
    idle_timeout: float = 60.0
    #: Modules the zygote imports before forking, so that every worker starts with them.
    preload: tuple[str, ...] = ()
    python: str = sys.executable


@dataclass
class Assignment:
    """A try handed to the pool, with the executor's hooks for it."""

    job: Job
    xcom_max_bytes: int
    attach: Callable[[int], None]  # called with the worker's process group id
    finish: Callable[[Completion], None]
    abandoned: Callable[[], bool]  # already reported (cancelled while waiting)
    xcom_error: str | None = None


@dataclass
class _Worker:
    pid: int
    connection: Connection
    ready: bool = False
    current: Assignment | None = None
    tries: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    dags: dict[int, None] = field(default_factory=dict)  # tokens it holds, oldest first
    closing: bool = False  # takes no more tries
    gone: bool = False  # its connection closed


class WorkerPool:
    def __init__(
        self, store: Store, settings: PoolSettings, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics: Metrics = metrics or NullMetrics()
        self._lock = threading.RLock()
        self._workers: dict[int, _Worker] = {}
        self._starting: dict[int, socket.socket] = {}
        self._queue: deque[Assignment] = deque()
        self._tokens = itertools.count(1)
        self._dag_tokens: dict[int, tuple[Any, int, bytes]] = {}
        self._failures = StartFailures()
        self._zygote: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False
        self._started = threading.Event()
        self._start_error: str | None = None
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
        """Close every connection (idle workers exit) and kill what is still running."""
        with self._lock:
            self._stopping = True
            pids = list(self._workers)
        for pid in pids:
            _kill_group(pid, signal.SIGKILL)
        self._wake()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def stats(self) -> tuple[int, int]:
        """(busy, idle) workers."""
        with self._lock:
            busy = sum(1 for w in self._workers.values() if w.current is not None)
            idle = sum(1 for w in self._workers.values() if w.ready and w.current is None)
        return busy, idle

    # --- submitting -----------------------------------------------------------------------
    def submit(self, assignment: Assignment) -> None:
        with self._lock:
            if self._failures.broken is not None:
                message = f"no worker can start: {self._failures.broken}"
                assignment.finish(Completion(assignment.job.key, assignment.job.try_number,
                                             "failed", message))  # fmt: skip
                return
            self._queue.append(assignment)
            self._assign_locked()
            if self._queue:
                self._grow_locked()

    def _assign_locked(self) -> None:
        while self._queue:
            worker = next(
                (w for w in self._workers.values() if w.ready and w.current is None and
                 not w.closing), None,
            )  # fmt: skip
            if worker is None:
                return
            assignment = self._queue.popleft()
            if assignment.abandoned():
                continue
            worker.current = assignment
            try:
                self._send_job(worker, assignment)
            except Exception as exc:  # nothing was run: the try fails with the reason
                worker.current = None
                assignment.finish(Completion(assignment.job.key, assignment.job.try_number,
                                             "failed", f"cannot send the task to a worker: {exc}"))  # fmt: skip
                continue
            assignment.attach(worker.pid)
        self._report_gauges()

    def _send_job(self, worker: _Worker, assignment: Assignment) -> None:
        job = assignment.job
        token, data = self._dag_token(job.dag)
        if token not in worker.dags:
            worker.connection.send_bytes(wire.dumps((wire.DAG, token, data, sys.path)))
            worker.dags[token] = None
            if len(worker.dags) > KEEP_DAGS:
                worker.dags.pop(next(iter(worker.dags)))
        message = wire.WireJob(
            token, job.task.task_id, job.run, job.try_number, assignment.xcom_max_bytes
        )
        worker.connection.send_bytes(wire.dumps((wire.RUN, message)))

    def _dag_token(self, dag: Any) -> tuple[int, bytes]:
        """One pickled copy per DAG version (DAGs are immutable: the object is the version)."""
        cached = self._dag_tokens.get(id(dag))
        if cached is None or cached[0] is not dag:
            cached = (dag, next(self._tokens), wire.dumps(dag))
            self._dag_tokens[id(dag)] = cached
            if len(self._dag_tokens) > 4 * KEEP_DAGS:
                self._dag_tokens.pop(next(iter(self._dag_tokens)))
        return cached[1], cached[2]

    def _grow_locked(self) -> None:
        live = len(self._workers) + len(self._starting)
        idle = sum(1 for w in self._workers.values() if w.current is None and not w.closing)
        starting = len(self._starting) + idle
        if live < self.settings.max_size and starting < len(self._queue):
            self._spawn_locked()

    # --- the supervisor thread ----------------------------------------------------------------
    def _supervise(self) -> None:
        try:
            self._start_zygote()
        except Exception as exc:
            self._start_error = str(exc)
            self._started.set()
            self._shutdown()
            return
        while not self._stopping:
            self._step()
        self._shutdown()

    def _start_zygote(self) -> None:
        """Fork server first (from this long-lived thread: a parent-death signal follows the
        thread that started the child), then the warm workers."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [self.settings.python, "-m", "pipeline_core.engine.zygote", str(theirs.fileno())]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            self._zygote = subprocess.Popen(
                [*argv, *self.settings.preload],
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # a signal to the engine's group must not reach it
                stdin=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            raise ConfigurationError(f"cannot run {self.settings.python}: {exc}") from None
        finally:
            theirs.close()
        ours.settimeout(START_TIMEOUT)
        try:
            first = json.loads(ours.recv(wire_size()) or b"{}")
        except (TimeoutError, OSError, ValueError):
            first = {}
        ours.settimeout(None)
        if "ready" not in first:
            code = self._zygote.wait(5)
            raise ConfigurationError(
                first.get("error") or f"the worker zygote exited with code {code} before it was ready"
            )
        self._control = ours
        with self._lock:
            for _ in range(self.settings.size):
                self._spawn_locked()

    def _step(self) -> None:
        with self._lock:
            connections: list[Any] = [w.connection for w in self._workers.values() if not w.gone]
        timeout = min(self.settings.idle_timeout, self._failures.retry_in() or 1.0)
        control = self._control
        assert control is not None
        for ready in wait([control, self._wake_r, *connections], timeout):
            if ready is control:
                self._on_control()
            elif ready is self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            else:
                self._on_worker(ready)  # type: ignore[arg-type]
        with self._lock:
            self._housekeep_locked()

    def _on_control(self) -> None:
        assert self._control is not None
        try:
            data = self._control.recv(wire_size())
        except OSError:
            data = b""
        if not data:
            self._zygote_died()
            return
        message = json.loads(data)
        with self._lock:
            if "spawned" in message:
                sock = self._starting.pop(message["spawned"], None)
                if sock is not None:
                    connection = Connection(sock.detach())
                    self._workers[message["pid"]] = _Worker(message["pid"], connection)
            elif "exited" in message:
                self._worker_exited(message["exited"], message["code"])

    def _on_worker(self, connection: Connection) -> None:
        worker = next((w for w in self._workers.values() if w.connection is connection), None)
        if worker is None:
            return
        try:
            message = wire.loads(connection.recv_bytes())
        except (EOFError, OSError):
            with self._lock:
                worker.closing = True  # its exit report says why
                worker.gone = True
            return
        kind = message[0]
        if kind == wire.READY:
            with self._lock:
                worker.ready = True
                self._failures.started()
                self._started.set()
                self._assign_locked()
        elif worker.current is not None:
            self._from_try(worker, worker.current, message)

    def _from_try(self, worker: _Worker, assignment: Assignment, message: tuple[Any, ...]) -> None:
        job = assignment.job
        kind = message[0]
        if kind == wire.LOG:
            with contextlib.suppress(Exception):
                self.store.append_log(job.key, job.try_number, message[1])
        elif kind == wire.GET_XCOM:
            entry = None
            source = TaskKey(job.key.dag_id, job.key.run_id, message[1])
            try:
                entry = self.store.get_xcom(source, message[2])
            except Exception:
                logger.exception("could not read XCom %s of %s", message[2], source)
            worker.connection.send_bytes(wire.dumps((entry,)))
        elif kind == wire.SET_XCOM:
            try:
                self.store.set_xcom(job.key, message[1], message[2])
            except Exception as exc:
                assignment.xcom_error = f"could not store XCom '{message[1]}': {exc}"
        elif kind == wire.METRIC and message[1] in ("counter", "gauge", "histogram"):
            getattr(self.metrics, message[1])(message[2], message[3], **message[4])
        elif kind == wire.DONE:
            _, outcome, error, follow, poke_ok = message
            if assignment.xcom_error is not None and outcome == "success":
                outcome, error = "failed", assignment.xcom_error
            result = Result(tuple(follow) if follow is not None else None, poke_ok)
            with self._lock:
                worker.current = None
                worker.tries += 1
                worker.idle_since = time.monotonic()
                limit = self.settings.max_tasks_per_worker
                if limit and worker.tries >= limit:
                    self._retire_locked(worker, "recycled")
            assignment.finish(Completion(job.key, job.try_number, outcome, error, result))
            with self._lock:
                self._assign_locked()

    def _worker_exited(self, pid: int, code: int) -> None:
        worker = self._workers.pop(pid, None)
        _kill_group(pid, signal.SIGKILL)  # whatever the try started in its group goes too
        if worker is None:
            return
        with contextlib.suppress(OSError):
            worker.connection.close()
        assignment = worker.current
        if not worker.ready:
            self._failures.failed(f"{exit_reason(code)} while starting")
            if not self._started.is_set() and self._failures.broken is not None:
                self._start_error = self._failures.broken
                self._started.set()
            self._fail_queue_if_broken_locked()
        elif not (worker.closing and assignment is None):
            self.metrics.counter("worker.restarts")
        if assignment is not None:
            reason = exit_reason(code, assignment.job.task)
            if not assignment.abandoned():
                kind = "limit" if "limit" in reason else "crash"
                self.metrics.counter("task.killed", reason=kind)
            job = assignment.job
            assignment.finish(Completion(job.key, job.try_number, "failed", reason))
        self._report_gauges()

    def _zygote_died(self) -> None:
        """The fork server went away (its workers with it): fail their tries, start anew."""
        code = self._zygote.poll() if self._zygote is not None else None
        logger.error("the worker zygote exited (code %s); starting a new one", code)
        with self._lock:
            workers, self._workers = self._workers, {}
            self._starting.clear()
        for worker in workers.values():
            _kill_group(worker.pid, signal.SIGKILL)
            if worker.current is not None:
                job = worker.current.job
                reason = "the worker pool's zygote died"
                worker.current.finish(Completion(job.key, job.try_number, "failed", reason))
        if self._control is not None:
            self._control.close()
            self._control = None
        try:
            self._start_zygote()
        except Exception as exc:
            with self._lock:
                self._failures.failed(str(exc))
                self._fail_queue_if_broken_locked()
            time.sleep(self._failures.retry_in() or 1.0)

    # --- workers coming and going ---------------------------------------------------------
    def _spawn_locked(self) -> None:
        if self._control is None or self._stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        token = next(self._tokens)
        try:
            socket.send_fds(self._control, [json.dumps({"spawn": token}).encode()],
                            [theirs.fileno()])  # fmt: skip
        except OSError as exc:
            ours.close()
            logger.error("cannot ask the zygote for a worker: %s", exc)
            return
        finally:
            theirs.close()
        self._starting[token] = ours

    def _retire_locked(self, worker: _Worker, why: str) -> None:
        """Let an idle worker go: closing its connection ends its loop."""
        worker.closing = True
        logger.debug("worker %d %s", worker.pid, why)
        with contextlib.suppress(OSError):
            worker.connection.close()
        worker.gone = True

    def _housekeep_locked(self) -> None:
        wanted = self.settings.size
        if self._failures.retry_in() == 0.0 or self._failures.broken is None:
            live = sum(1 for w in self._workers.values() if not w.closing) + len(self._starting)
            for _ in range(max(0, wanted - live)):
                if self._failures.retry_in():
                    break
                self._spawn_locked()
        now = time.monotonic()
        idle = [w for w in self._workers.values()
                if w.ready and w.current is None and not w.closing]  # fmt: skip
        for worker in idle[wanted:]:
            if now - worker.idle_since >= self.settings.idle_timeout:
                self._retire_locked(worker, "idle")
        if self._queue:
            self._grow_locked()

    def _fail_queue_if_broken_locked(self) -> None:
        if self._failures.broken is None:
            return
        while self._queue:
            assignment = self._queue.popleft()
            job = assignment.job
            message = f"no worker can start: {self._failures.broken}"
            assignment.finish(Completion(job.key, job.try_number, "failed", message))

    def _shutdown(self) -> None:
        with self._lock:
            for worker in self._workers.values():
                _kill_group(worker.pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    worker.connection.close()
            self._workers.clear()
            for sock in self._starting.values():
                sock.close()
            self._starting.clear()
        if self._control is not None:
            self._control.close()  # the zygote kills whatever is left and exits
        if self._zygote is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._zygote.wait(5)
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _report_gauges(self) -> None:
        busy = sum(1 for w in self._workers.values() if w.current is not None)
        idle = sum(1 for w in self._workers.values() if w.ready and w.current is None)
        self.metrics.gauge("workers.busy", busy)
        self.metrics.gauge("workers.idle", idle)


def wire_size() -> int:
    return 64 * 1024


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
