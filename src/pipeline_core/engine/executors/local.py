"""The local executor: task bodies run away from the orchestrator thread.

Code that a task brings (``python``, ``branch`` with a callable, ``sensor`` with ``poke``,
``shell``) runs in the warm worker pool by default, one try per worker process, where a hang
can be killed and a crash fails only that try; ``executor: process`` runs the callable in a
fresh interpreter started by a worker. ``executor: thread`` (opt-in, for trusted tiny
callables) and bodies without user code (``noop``, condition branches, file and time
sensors) run on a bounded thread pool here. One watchdog thread enforces timeouts and
cancels: SIGTERM to the try's process group, then SIGKILL after the grace period.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import os
import signal
import threading
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipeline_core.dag.model import Task
from pipeline_core.engine.core.jobs import Completion, Job, OnComplete
from pipeline_core.engine.executors.workers.pool import Assignment, PoolSettings, WorkerPool
from pipeline_core.engine.tasks.context import DEFAULT_XCOM_MAX_BYTES, TaskContext, TaskFailed
from pipeline_core.engine.tasks.handlers import HANDLERS, Handler
from pipeline_core.engine.tasks.logs import ROUTER, TaskLog
from pipeline_core.engine.tasks.secrets import Credentials, MaskedTaskData, TrySecrets
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import TaskKey
from pipeline_core.store.base import Store


def executor_mode(task: Task, default: str = "worker") -> str:
    """Where ``task`` runs: its own ``executor``, else the default for bodies that run user
    code, else ``thread`` (nothing to isolate)."""
    if task.executor is not None:
        return task.executor
    config = task.config
    runs_code = (
        task.type in ("python", "shell")
        or (task.type == "branch" and "callable" in config)
        or (task.type == "sensor" and "poke" in config)
    )
    return default if runs_code else "thread"


@dataclass
class _Running:
    job: Job
    secrets: TrySecrets
    context: TaskContext | None = None
    pgid: int | None = None  # the process group that runs it, once there is one
    ending: str | None = None  # why the executor is stopping it: timeout / cancelled
    reported: bool = False

    def attach(self, pgid: int) -> None:
        self.pgid = pgid
        if self.ending is not None:
            kill_group(pgid, signal.SIGTERM)


def kill_group(pgid: int, sig: int) -> None:
    """Signal a whole process group (a try's children too); quiet if it already exited."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LocalExecutor:
    """Runs jobs on this machine: in the worker pool or on a bounded thread pool."""

    def __init__(
        self,
        store: Store,
        *,
        max_workers: int = 32,
        kill_grace: float = 5.0,
        xcom_max_bytes: int = DEFAULT_XCOM_MAX_BYTES,
        handlers: dict[str, Handler] | None = None,
        metrics: Metrics | None = None,
        default_mode: str = "worker",
        pool: PoolSettings | None = None,
    ) -> None:
        self.store = store
        self.metrics: Metrics = metrics or NullMetrics()
        self.kill_grace = kill_grace
        self.xcom_max_bytes = xcom_max_bytes
        self.handlers = handlers if handlers is not None else HANDLERS
        self.default_mode = default_mode
        self._threads = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="task")
        self._pool_settings = pool or PoolSettings(max_size=max_workers)
        self._workers: WorkerPool | None = None
        self._workers_lock = threading.Lock()
        self._running: dict[tuple[TaskKey, int], _Running] = {}
        self._lock = threading.Lock()
        self._deadlines: list[tuple[float, int, tuple[TaskKey, int], str]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._on_complete: OnComplete = lambda completion: None
        self.credentials = Credentials(store.credentials)
        self._watchdog = threading.Thread(target=self._watch, name="task-watchdog", daemon=True)

    def start(self, on_complete: OnComplete) -> None:
        self._on_complete = on_complete
        if self.default_mode != "thread":
            self._start_workers()
        ROUTER.install()
        self._watchdog.start()

    def _start_workers(self) -> WorkerPool:
        """The worker pool, started on first need."""
        with self._workers_lock:
            if self._workers is None:
                pool = WorkerPool(self.store, self._pool_settings, self.metrics)
                self._workers = pool.start()
            return self._workers

    @property
    def workers(self) -> WorkerPool | None:
        """The worker pool, if it has been started."""
        return self._workers

    def submit(self, job: Job) -> None:
        running = _Running(job, TrySecrets(self.credentials))
        with self._lock:
            self._running[(job.key, job.try_number)] = running
            if job.timeout is not None:
                self._schedule(time.monotonic() + job.timeout, (job.key, job.try_number), "timeout")
        mode = executor_mode(job.task, self.default_mode)
        if mode == "thread":
            running.context = self._context(job, running)
            self._threads.submit(self._run, running)
            return
        try:
            workers = self._start_workers()  # a task may want workers where threads are default
        except Exception as exc:
            self._report(running, Completion(job.key, job.try_number, "failed", str(exc)))
            return
        workers.submit(
            Assignment(
                job,
                job.xcom_max_bytes or self.xcom_max_bytes,
                fresh=mode == "process",
                attach=running.attach,
                finish=lambda completion: self._report(running, completion),
                stopped=lambda: running.reported or running.ending is not None,
                secrets=running.secrets,
            )
        )

    def _context(self, job: Job, running: _Running) -> TaskContext:
        task_data = MaskedTaskData(self.store.task_data, running.secrets)
        context = TaskContext(
            job.dag,
            job.task,
            job.run,
            job.try_number,
            task_data,
            TaskLog(task_data, job.key, job.try_number),
            job.xcom_max_bytes or self.xcom_max_bytes,
            self.metrics,
            map_index=job.key.map_index,
            map_values=job.map_values,
            store=self.store,
            credentials=running.secrets,
        )
        context.process_holder = running
        return context

    def cancel(self, key: TaskKey, try_number: int) -> None:
        self._stop((key, try_number), "cancelled")

    def running_elsewhere(self, tries: Collection[tuple[TaskKey, int]]) -> set[tuple[TaskKey, int]]:
        """None: a try of this machine ends with the engine that started it."""
        return set()

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        with self._workers_lock:
            if self._workers is not None:
                self._workers.stop()
        self._threads.shutdown(wait=wait, cancel_futures=not wait)
        if self._watchdog.is_alive():
            self._watchdog.join(timeout=5)
        ROUTER.uninstall()

    # --- running a job on a thread --------------------------------------------------------
    def _run(self, running: _Running) -> None:
        job, context = running.job, running.context
        assert context is not None
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
        if ending is not None and running.pgid is not None:
            self.metrics.counter(
                "task.killed", reason="timeout" if ending == "timeout" else "cancel"
            )
        if ending == "timeout":
            completion = Completion(
                completion.key,
                completion.try_number,
                "timeout",
                f"timed out after {running.job.timeout:g}s",
            )
        elif ending == "cancelled":
            completion = Completion(completion.key, completion.try_number, "cancelled", "cancelled")
        elif completion.error:
            completion = dataclasses.replace(
                completion, error=running.secrets.mask_error(completion.error)
            )
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
            if running.context is not None:
                running.context.cancelled.set()
            pgid = running.pgid
            if pgid is not None:
                self._schedule(time.monotonic() + self.kill_grace, key, "kill")
        if pgid is not None:
            kill_group(pgid, signal.SIGTERM)
        else:
            # Nothing to kill (a thread, or a try still waiting for a worker): report now and
            # ignore whatever comes of it later.
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
            elif action == "kill" and running.pgid is not None:
                kill_group(running.pgid, signal.SIGKILL)
