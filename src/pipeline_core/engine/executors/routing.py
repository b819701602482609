"""``RoutingExecutor``: one engine, two executors — tries of Celery tasks to the remote one,
everything else to this machine's."""

from __future__ import annotations

import threading
from collections.abc import Collection

from pipeline_core.engine.core.jobs import Completion, Executor, Job, OnComplete
from pipeline_core.engine.executors.local import executor_mode
from pipeline_core.model import TaskKey

REMOTE_MODE = "celery"


class RoutingExecutor:
    def __init__(self, local: Executor, remote: Executor, *, default_mode: str) -> None:
        """``default_mode``: where tasks that run code go unless they say (``celery`` sends
        them all to the remote executor)."""
        self.local = local
        self.remote = remote
        self.default_mode = default_mode
        self._where: dict[tuple[TaskKey, int], Executor] = {}
        self._lock = threading.Lock()

    def start(self, on_complete: OnComplete) -> None:
        def completed(completion: Completion) -> None:
            with self._lock:
                self._where.pop((completion.key, completion.try_number), None)
            on_complete(completion)

        self.remote.start(completed)  # refuses first when its broker does not answer
        try:
            self.local.start(completed)
        except Exception:
            self.remote.shutdown(wait=False)
            raise

    def submit(self, job: Job) -> None:
        remote = executor_mode(job.task, self.default_mode) == REMOTE_MODE
        executor = self.remote if remote else self.local
        with self._lock:
            self._where[(job.key, job.try_number)] = executor
        executor.submit(job)

    def cancel(self, key: TaskKey, try_number: int) -> None:
        with self._lock:
            executor = self._where.get((key, try_number))
        if executor is None:  # not sent from here: an adopted try is remote
            executor = self.remote
        executor.cancel(key, try_number)

    def running_elsewhere(self, tries: Collection[tuple[TaskKey, int]]) -> set[tuple[TaskKey, int]]:
        return self.remote.running_elsewhere(tries)

    def shutdown(self, wait: bool = True) -> None:
        self.local.shutdown(wait=wait)
        self.remote.shutdown(wait=wait)
