"""``TryWorker``: what a ``pipeline-core worker`` process does with each try Celery hands it.

A try is claimed in the store first, so a message delivered twice (a Redis visibility
timeout, a RabbitMQ redelivery) runs once; a claim held by a worker that died is reported
lost instead. The try then runs in this process's worker pool — the same isolation, limits,
timeouts, logs and XCom as on the engine's machine — and its end is reported as a
``task.reported`` event. The worker follows ``task.kill_requested`` to stop a try it runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.clock import Clock, SystemClock
from pipeline_core.dag.bag import load_folder
from pipeline_core.dag.model import DAG
from pipeline_core.dag.versions import VersionUnavailable
from pipeline_core.engine.core.jobs import Completion, Job
from pipeline_core.engine.executors.celery.wire import (
    KILL_REQUESTED,
    TryMessage,
    lost_claim_error,
    report_of,
)
from pipeline_core.engine.executors.local import LocalExecutor
from pipeline_core.engine.tasks.versions import VersionLoader
from pipeline_core.errors import NotFound
from pipeline_core.events import Event
from pipeline_core.model import TaskKey
from pipeline_core.store.base import Store
from pipeline_core.store.types import TryReport

logger = logging.getLogger("pipeline_core.worker")
TryId = tuple[TaskKey, int]


@dataclass(frozen=True)
class WorkerSettings:
    dags_folder: str
    heartbeat_interval: float = 5.0
    #: A claim whose worker has been silent this long is lost (as the engine judges it).
    lost_after: float = 30.0
    #: Reload the DAGs folder at most this often when a try names a DAG it does not match.
    reload_interval: float = 1.0


@dataclass
class _Held:
    submission: str
    done: Future[Completion] = field(default_factory=Future)
    started: bool = False
    kill: bool = False


class TryWorker:
    def __init__(
        self,
        store: Store,
        executor: LocalExecutor,
        settings: WorkerSettings,
        *,
        clock: Clock | None = None,
        load: Callable[[], Mapping[str, DAG]] | None = None,
    ) -> None:
        """``load``: where the DAGs come from (default: the DAGs folder of ``settings``)."""
        self.store = store
        self._load = load or self._load_folder
        self.executor = executor
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.worker_id = f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._held: dict[TryId, _Held] = {}
        self._lock = threading.RLock()
        self._dags: dict[str, tuple[DAG, str]] = {}
        self.versions = VersionLoader(store)
        self._loaded_at = float("-inf")
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeats, name="worker-heartbeat", daemon=True)

    def start(self) -> TryWorker:
        self._reload(force=True)
        self.executor.start(self._completed)
        self.store.feed.subscribe(self._on_events, other_processes=True)
        self._heartbeat()
        self._beat.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.store.feed.unsubscribe(self._on_events)
        self.executor.shutdown(wait=False)
        if self._beat.is_alive():
            self._beat.join(timeout=5)
        try:
            self.store.heartbeats.release_heartbeat(self.worker_id)
        except Exception:
            logger.warning("could not release the heartbeat of %s", self.worker_id)

    @property
    def dags(self) -> dict[str, DAG]:
        return {dag_id: dag for dag_id, (dag, _) in self._dags.items()}

    # --- one try ------------------------------------------------------------------------
    def run(self, kwargs: dict[str, Any]) -> str:
        """Run the try a message names, blocking until it ended and was reported; returns
        what became of it (for the worker's log)."""
        try:
            message = TryMessage.from_kwargs(kwargs)
        except ValueError as exc:
            logger.error("dropped a malformed message: %s", exc)
            return "malformed"
        try_id = (message.key, message.try_number)
        held = _Held(message.submission)
        with self._lock:
            self._held[try_id] = held  # before the claim: a kill request may follow it at once
        try:
            return self._claim_and_run(message, held)
        finally:
            with self._lock:
                if self._held.get(try_id) is held:
                    del self._held[try_id]

    def _claim_and_run(self, message: TryMessage, held: _Held) -> str:
        key, number = message.key, message.try_number
        claim = self.store.tries.claim_try(key, number, message.submission, self.worker_id)
        if claim is None:
            return "not running any more"
        if claim.worker_id != self.worker_id:
            beats = {b.component_id: b for b in self.store.heartbeats.list_heartbeats("worker")}
            error = lost_claim_error(
                claim, beats.get(claim.worker_id), self.clock.now(), self.settings.lost_after
            )
            if error is None:
                return f"a duplicate: {claim.worker_id} holds it"
            self._report(
                key,
                number,
                TryReport("failed", error, worker_id=claim.worker_id, submission=claim.submission),
            )
            return "lost by its worker"
        job_or_error = self._job(message)
        if isinstance(job_or_error, str):
            report = TryReport(
                "failed", job_or_error, worker_id=self.worker_id, submission=message.submission
            )
            self._report(key, number, report)
            return "refused"
        with self._lock:  # a kill request now either finds it started or stops its start
            held.started = True
            if held.kill:
                held.done.set_result(Completion(key, number, "cancelled", "cancelled"))
            else:
                self.executor.submit(job_or_error)
        completion = held.done.result()
        self._report(key, number, report_of(completion, self.worker_id, message.submission))
        return completion.outcome

    def _job(self, message: TryMessage) -> Job | str:
        """The job to run, or why this worker refuses it."""
        key = message.key
        dag = self._dag(key.dag_id, message.dag_version)
        if isinstance(dag, str):
            return dag
        task = dag.task_dict.get(key.task_id)
        if task is None:
            return f"DAG '{key.dag_id}' has no task '{key.task_id}' on worker {self.worker_id}"
        try:
            run = self.store.runs.get_run(key.dag_id, key.run_id)
        except NotFound:
            return f"run '{key.run_id}' of DAG '{key.dag_id}' is not in the store"
        return Job(
            key,
            message.try_number,
            dag,
            task,
            run,
            message.timeout,
            message.xcom_max_bytes,
            message.map_values,
        )

    def _dag(self, dag_id: str, version: str) -> DAG | str:
        """The DAG version the engine runs: the worker's own files', or else the store's
        (rebuilt from the text its file had)."""
        held = self._dags.get(dag_id)
        if held is None or held[1] != version:
            self._reload()
            held = self._dags.get(dag_id)
        if held is not None and held[1] == version:
            return held[0]
        try:
            return self.versions.version(dag_id, version)
        except VersionUnavailable as exc:
            return f"worker {self.worker_id}: {exc}"

    def _reload(self, *, force: bool = False) -> None:
        now = self.clock.monotonic()
        with self._lock:
            if not force and now - self._loaded_at < self.settings.reload_interval:
                return
            self._loaded_at = now
        self._dags = {dag_id: (dag, dag.version) for dag_id, dag in self._load().items()}

    def _load_folder(self) -> Mapping[str, DAG]:
        bag = load_folder(self.settings.dags_folder)
        for path, issues in bag.errors.items():
            logger.warning("%s: %s", path, "; ".join(issue.message for issue in issues))
        return bag.dags

    def _report(self, key: TaskKey, try_number: int, report: TryReport) -> None:
        """Report, retrying while the store is unreachable: an end must not be lost."""
        delay = 0.2
        while True:
            try:
                self.store.tries.report_try(key, try_number, report)
                return
            except Exception as exc:
                if self._stop.is_set():
                    raise
                logger.warning("cannot report try %d of %s yet: %s", try_number, key, exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # --- what the pool and the event log say ----------------------------------------------
    def _completed(self, completion: Completion) -> None:
        with self._lock:
            held = self._held.get((completion.key, completion.try_number))
        if held is not None and not held.done.done():
            held.done.set_result(completion)

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            if event.type != KILL_REQUESTED or not (event.dag_id and event.run_id):
                continue
            index = int(event.payload.get("map_index", -1))
            key = TaskKey(event.dag_id, event.run_id, event.task_id or "", index)
            number = int(event.payload.get("try_number", 0))
            with self._lock:
                held = self._held.get((key, number))
                if held is None:
                    continue
                held.kill = True
                started = held.started
            if started:
                self.executor.cancel(key, number)

    # --- heartbeats -------------------------------------------------------------------
    def _heartbeat(self) -> None:
        self.store.heartbeats.heartbeat(
            self.worker_id, kind="worker", hostname=socket.gethostname(), pid=os.getpid()
        )

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval):
            try:
                self._heartbeat()
            except Exception as exc:
                logger.warning("heartbeat failed: %s", exc)
