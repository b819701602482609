"""The engine's side of one worker process: its connection, the try it runs, and what the
try's messages do (log lines and XCom values to the store, XCom reads answered from it)."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from pipeline_core.engine.core.jobs import Completion, Job, Result
from pipeline_core.engine.executors.workers import wire
from pipeline_core.engine.tasks.secrets import TrySecrets
from pipeline_core.metrics import Metrics
from pipeline_core.model import TaskKey
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine.workers")


@dataclass
class Assignment:
    """A try handed to the pool, with the executor's hooks for it."""

    job: Job
    xcom_max_bytes: int
    fresh: bool  # a fresh interpreter for this try alone (``executor: process``)
    attach: Callable[[int], None]  # called with the process group that runs it
    finish: Callable[[Completion], None]
    stopped: Callable[[], bool]  # being stopped (timeout, cancel) or already reported
    #: The try's lookups, and the masker of what it writes (log text, XCom values).
    secrets: TrySecrets = field(default_factory=lambda: TrySecrets(None))
    xcom_error: str | None = None

    def fail(self, error: str) -> None:
        self.finish(Completion(self.job.key, self.job.try_number, "failed", error))


@dataclass
class WorkerLink:
    pid: int
    connection: Connection
    #: A fresh interpreter for one try (``executor: process``), started by the pool itself.
    process: subprocess.Popen[bytes] | None = None
    ready: bool = False
    current: Assignment | None = None
    pending: Assignment | None = None  # a fresh interpreter's try, sent once it is ready
    tries: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    busy_since: float = 0.0
    dags: dict[int, None] = field(default_factory=dict)  # tokens it holds, oldest first
    closing: bool = False  # takes no more tries
    gone: bool = False  # its connection is closed

    @property
    def idle(self) -> bool:
        return self.ready and self.current is None and not self.closing

    def send(
        self,
        assignment: Assignment,
        dag: tuple[int, bytes],
        run_bytes: bytes,
        path: list[str],
    ) -> None:
        """Hand the worker a try (and first the DAG, if it does not have that version)."""
        job = assignment.job
        dag_token, dag_bytes = dag
        self.current = assignment  # before sending: its answer may come back at once
        self.busy_since = time.monotonic()
        if dag_token not in self.dags:
            self.connection.send_bytes(wire.dumps((wire.DAG, dag_token, dag_bytes, path)))
            self.dags[dag_token] = None
            if len(self.dags) > wire.KEEP_DAGS:
                self.dags.pop(next(iter(self.dags)))
        message = wire.WireJob(
            dag_token,
            job.task.task_id,
            run_bytes,
            job.try_number,
            assignment.xcom_max_bytes,
            job.key.map_index,
            None if job.map_values is None else dict(job.map_values),
        )
        self.connection.send_bytes(wire.dumps(message.to_message()))

    def close(self) -> None:
        self.closing = self.gone = True
        with contextlib.suppress(OSError):
            self.connection.close()

    def handle(self, message: tuple[Any, ...], store: Store, metrics: Metrics) -> Completion | None:
        """Apply one message of the running try; its ``Completion`` once it is done."""
        assignment = self.current
        if assignment is None:
            return None
        job, kind = assignment.job, message[0]
        if kind == wire.LOG:
            try:
                text = assignment.secrets.mask(message[1])
                store.task_data.append_log(job.key, job.try_number, text)
            except Exception as exc:  # a log that cannot be written must not fail the task
                logger.error("could not write the log of %s: %s", job.key, exc)
        elif kind == wire.GET_XCOM:
            answer = wire.dumps((self._xcom(store, job, *message[1:]),))
            with contextlib.suppress(OSError):  # a worker killed meanwhile: its exit tells
                self.connection.send_bytes(answer)
        elif kind == wire.GET_CREDENTIAL:
            answer = wire.dumps(assignment.secrets.lookup(message[1], message[2]))
            with contextlib.suppress(OSError):
                self.connection.send_bytes(answer)
        elif kind == wire.SET_XCOM:
            try:
                value = assignment.secrets.masker.mask_value(message[2])
                store.task_data.set_xcom(job.key, message[1], value)
            except Exception as exc:
                assignment.xcom_error = f"could not store XCom '{message[1]}': {exc}"
        elif kind == wire.METRIC and message[1] in ("counter", "gauge", "histogram"):
            getattr(metrics, message[1])(message[2], message[3], **message[4])
        elif kind == wire.DONE:
            return self._done(assignment, *message[1:])
        return None

    @staticmethod
    def _xcom(store: Store, job: Job, task_id: str, name: str, mapped: bool = False) -> Any:
        source = TaskKey(job.key.dag_id, job.key.run_id, task_id)
        try:
            if mapped:
                return store.task_data.get_mapped_xcom(source, name)
            return store.task_data.get_xcom(source, name)
        except Exception:
            logger.exception("could not read XCom %s of %s", name, source)
            return None

    def _done(
        self, assignment: Assignment, outcome: str, error: str | None, follow: Any, poke_ok: bool
    ) -> Completion:
        if assignment.xcom_error is not None and outcome == "success":
            outcome, error = "failed", assignment.xcom_error
        self.current = None
        self.tries += 1
        self.idle_since = time.monotonic()
        job = assignment.job
        result = Result(tuple(follow) if follow is not None else None, poke_ok)
        return Completion(job.key, job.try_number, outcome, error, result)
