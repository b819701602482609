"""Executors run task bodies away from the orchestrator thread and report completions.

The ``Executor`` protocol is submit-a-job / get-a-completion-back, so a distributed executor
(Celery) fits it as well as the ``LocalExecutor`` here: a bounded thread pool for task bodies,
subprocesses in their own process group for shell tasks and isolated python tasks, and one
watchdog thread that enforces timeouts and cancels (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import heapq
import itertools
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine.context import DEFAULT_XCOM_MAX_BYTES, TaskContext, TaskFailed
from pipeline_core.engine.handlers import HANDLERS, Handler, Result, kill_group
from pipeline_core.engine.logs import ROUTER, TaskLog
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRun, TaskKey


@dataclass(frozen=True, slots=True)
class Job:
    """One try of one task instance."""

    key: TaskKey
    try_number: int
    dag: DAG
    task: Task
    run: DagRun
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """How a try ended: ``success``, ``failed``, ``timeout`` or ``cancelled``."""

    key: TaskKey
    try_number: int
    outcome: str
    error: str | None = None
    result: Result = field(default_factory=Result)


OnComplete = Callable[[Completion], None]


class Executor(Protocol):
    def start(self, on_complete: OnComplete) -> None:
        """Begin accepting jobs; completions are reported through ``on_complete``."""
        ...

    def submit(self, job: Job) -> None: ...

    def cancel(self, key: TaskKey, try_number: int) -> None:
        """Stop a running try (its completion reports ``cancelled``)."""
        ...

    def shutdown(self, wait: bool = True) -> None: ...


@dataclass
class _Running:
    job: Job
    context: TaskContext
    process: subprocess.Popen[bytes] | None = None
    ending: str | None = None  # why the executor is stopping it: timeout / cancelled
    reported: bool = False

    def attach(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        if self.ending is not None:
            kill_group(process, signal.SIGTERM)


class LocalExecutor:
    """Runs jobs on a bounded thread pool in this process."""

    def __init__(
        self,
        store: Store,
        *,
        max_workers: int = 32,
        kill_grace: float = 5.0,
        xcom_max_bytes: int = DEFAULT_XCOM_MAX_BYTES,
        handlers: dict[str, Handler] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics: Metrics = metrics or NullMetrics()
        self.kill_grace = kill_grace
        self.xcom_max_bytes = xcom_max_bytes
        self.handlers = handlers if handlers is not None else HANDLERS
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="task")
        self._running: dict[tuple[TaskKey, int], _Running] = {}
        self._lock = threading.Lock()
        self._deadlines: list[tuple[float, int, tuple[TaskKey, int], str]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._on_complete: OnComplete = lambda completion: None
        self._watchdog = threading.Thread(target=self._watch, name="task-watchdog", daemon=True)

    def start(self, on_complete: OnComplete) -> None:
        self._on_complete = on_complete
        ROUTER.install()
        self._watchdog.start()

    def submit(self, job: Job) -> None:
        log = TaskLog(self.store, job.key, job.try_number)
        context = TaskContext(
            job.dag,
            job.task,
            job.run,
            job.try_number,
            self.store,
            log,
            self.xcom_max_bytes,
            self.metrics,
        )
        running = _Running(job, context)
        context.process_holder = running
        with self._lock:
            self._running[(job.key, job.try_number)] = running
            if job.timeout is not None:
                self._schedule(time.monotonic() + job.timeout, (job.key, job.try_number), "timeout")
        self._pool.submit(self._run, running)

    def cancel(self, key: TaskKey, try_number: int) -> None:
        self._stop((key, try_number), "cancelled")

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        if self._watchdog.is_alive():
            self._watchdog.join(timeout=5)
        ROUTER.uninstall()

    # --- running a job ----------------------------------------------------------------
    def _run(self, running: _Running) -> None:
        job, context = running.job, running.context
        handler = self.handlers.get(job.task.type)
        try:
            if handler is None:
                raise TaskFailed(f"no handler for task type '{job.task.type}'")
            result = handler(context)
            completion = Completion(job.key, job.try_number, "success", result=result)
        except TaskFailed as exc:
            completion = Completion(job.key, job.try_number, "failed", str(exc))
        except Exception as exc:  # a task body is user code: every error fails that task only
            context.log.info(f"{type(exc).__name__}: {exc}")
            completion = Completion(
                job.key, job.try_number, "failed", f"{type(exc).__name__}: {exc}"
            )
        finally:
            context.log.close()
        self._report(running, completion)

    def _report(self, running: _Running, completion: Completion) -> None:
        key = (running.job.key, running.job.try_number)
        with self._lock:
            if running.reported:
                return
            running.reported = True
            self._running.pop(key, None)
            ending = running.ending
        if ending == "timeout":
            completion = Completion(
                completion.key,
                completion.try_number,
                "timeout",
                f"timed out after {running.job.timeout:g}s",
            )
        elif ending == "cancelled":
            completion = Completion(completion.key, completion.try_number, "cancelled", "cancelled")
        self._on_complete(completion)

    # --- timeouts and cancels -----------------------------------------------------------
    def _schedule(self, when: float, key: tuple[TaskKey, int], action: str) -> None:
        heapq.heappush(self._deadlines, (when, next(self._order), key, action))
        self._wake.notify_all()

    def _stop(self, key: tuple[TaskKey, int], why: str) -> None:
        with self._lock:
            running = self._running.get(key)
            if running is None or running.ending is not None:
                return
            running.ending = why
            running.context.cancelled.set()
            process = running.process
            if process is not None:
                self._schedule(time.monotonic() + self.kill_grace, key, "kill")
        if process is not None:
            kill_group(process, signal.SIGTERM)
        else:
            # A thread cannot be killed: report now and ignore whatever it returns later.
            self._report(running, Completion(key[0], key[1], why))

    def _watch(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and (
                    not self._deadlines or self._deadlines[0][0] > time.monotonic()
                ):
                    timeout = self._deadlines[0][0] - time.monotonic() if self._deadlines else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _, _, key, action = heapq.heappop(self._deadlines)
                running = self._running.get(key)
            if running is None:
                continue
            if action == "timeout":
                self._stop(key, "timeout")
            elif action == "kill" and running.process is not None:
                kill_group(running.process, signal.SIGKILL)
