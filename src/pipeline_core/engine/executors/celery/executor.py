"""``CeleryExecutor``: the engine's side. Tries go out as Celery messages; their ends come
back as ``task.reported`` events in the store, which the executor follows.

Sending happens on a thread of its own, in order: while the broker is unreachable tries wait
here (and a cancelled one is dropped) and go out once it answers again, so none is lost.
A watcher reports the tries of workers whose heartbeat stopped as failed (a new try follows
when the task has tries left), and drops claims of tries that have moved on.
"""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from collections.abc import Collection
from typing import TYPE_CHECKING

from pipeline_core.clock import Clock, SystemClock
from pipeline_core.engine.core.jobs import Completion, Job, OnComplete
from pipeline_core.engine.executors.celery.app import (
    TASK_NAME,
    CelerySettings,
    check_broker,
    make_app,
    queue_for,
)
from pipeline_core.engine.executors.celery.wire import (
    KILL_REQUESTED,
    TryMessage,
    completion_of,
    lost_claim_error,
)
from pipeline_core.events import Event
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import TaskKey
from pipeline_core.store.base import Store
from pipeline_core.store.sql.common import masked_url
from pipeline_core.store.types import TryClaim, TryReport

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger("pipeline_core.celery")
TryId = tuple[TaskKey, int]


class CeleryExecutor:
    def __init__(
        self,
        store: Store,
        settings: CelerySettings,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        watch_interval: float = 2.0,
        xcom_max_bytes: int | None = None,
    ) -> None:
        """``xcom_max_bytes``: the limit the engine has, sent with every try."""
        self.store = store
        self.xcom_max_bytes = xcom_max_bytes
        self.settings = settings
        self.metrics: Metrics = metrics or NullMetrics()
        self.clock: Clock = clock or SystemClock()
        self.watch_interval = watch_interval
        self._app: Celery | None = None
        self._on_complete: OnComplete = lambda completion: None
        #: Tries waiting to be sent, in order, each with its queue.
        self._outbox: collections.OrderedDict[TryId, tuple[TryMessage, str]] = (
            collections.OrderedDict()
        )
        self._versions: dict[int, tuple[object, str]] = {}
        self._lock = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # --- Executor ---------------------------------------------------------------------
    def start(self, on_complete: OnComplete) -> None:
        """``ConfigurationError`` naming the broker when it does not answer: an engine that
        cannot send tries must not start any."""
        app = make_app(self.settings)
        check_broker(app, self.settings)
        self._app, self._on_complete = app, on_complete
        self.store.feed.subscribe(self._on_events, other_processes=True)
        for target, name in ((self._send_loop, "celery-send"), (self._watch_loop, "celery-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, job: Job) -> None:
        message = TryMessage(
            job.key,
            job.try_number,
            uuid.uuid4().hex,
            self._version(job),
            job.timeout,
            job.xcom_max_bytes or self.xcom_max_bytes,
            None if job.map_values is None else dict(job.map_values),
        )
        queue = queue_for(job.task.pool, self.settings)
        with self._lock:
            self._outbox[(job.key, job.try_number)] = (message, queue)
            self._lock.notify_all()

    def cancel(self, key: TaskKey, try_number: int) -> None:
        """A try still waiting to be sent is dropped here; one already sent is stopped by
        the worker running it, which follows ``task.kill_requested``."""
        with self._lock:
            unsent = self._outbox.pop((key, try_number), None)
        if unsent is not None:
            self._on_complete(Completion(key, try_number, "cancelled", "cancelled"))
            return
        self.store.events.append_event(
            KILL_REQUESTED,
            {"try_number": try_number, "map_index": key.map_index},
            dag_id=key.dag_id,
            run_id=key.run_id,
            task_id=key.task_id,
        )

    def running_elsewhere(self, tries: Collection[TryId]) -> set[TryId]:
        """Tries a live worker has claimed and not yet reported: they report when they end."""
        wanted = set(tries)
        if not wanted:
            return set()
        return {
            (claim.key, claim.try_number)
            for claim, lost in self._judged_claims()
            if (claim.key, claim.try_number) in wanted and claim.reported_at is None and not lost
        }

    def shutdown(self, wait: bool = True) -> None:
        self.store.feed.unsubscribe(self._on_events)
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=10 if wait else 1)

    @property
    def waiting(self) -> int:
        """Tries not yet handed to the broker."""
        with self._lock:
            return len(self._outbox)

    # --- reports ----------------------------------------------------------------------
    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            completion = completion_of(event)
            if completion is not None:
                self._on_complete(completion)

    def _version(self, job: Job) -> str:
        cached = self._versions.get(id(job.dag))
        if cached is None or cached[0] is not job.dag:
            cached = self._versions[id(job.dag)] = (job.dag, job.dag.version)
        return cached[1]

    # --- sending ----------------------------------------------------------------------
    def _send_loop(self) -> None:
        delay = 0.0
        while True:
            with self._lock:
                while not self._stopping and (not self._outbox or delay):
                    self._lock.wait(delay or None)
                    delay = 0.0
                if self._stopping:
                    return
                try_id, (message, queue) = next(iter(self._outbox.items()))
            try:
                self._send(message, queue)
            except Exception as exc:  # the broker is down: keep the try, try again soon
                if not delay:
                    logger.warning(
                        "Celery broker %s unreachable (%s); %d tries wait to be sent",
                        masked_url(self.settings.broker_url),
                        exc,
                        self.waiting,
                    )
                delay = 1.0
                continue
            with self._lock:
                if self._outbox.get(try_id, (None,))[0] is message:
                    del self._outbox[try_id]
            self.metrics.counter("celery.sent")

    def _send(self, message: TryMessage, queue: str) -> None:
        assert self._app is not None
        self._app.send_task(
            TASK_NAME,
            kwargs=message.to_kwargs(),
            queue=queue,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        )

    # --- lost workers -----------------------------------------------------------------
    def _watch_loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait(self.watch_interval)
                if self._stopping:
                    return
            try:
                self._report_lost()
                self.store.tries.prune_claims()
            except Exception:
                logger.exception("checking Celery workers failed; will check again")

    def _judged_claims(self) -> list[tuple[TryClaim, str | None]]:
        """Every claim, with why it is lost (``None`` while its worker lives)."""
        beats = {
            beat.component_id: beat for beat in self.store.heartbeats.list_heartbeats("worker")
        }
        now, lost_after = self.clock.now(), self.settings.worker_lost_after
        return [
            (claim, lost_claim_error(claim, beats.get(claim.worker_id), now, lost_after))
            for claim in self.store.tries.list_claims()
        ]

    def _report_lost(self) -> None:
        for claim, error in self._judged_claims():
            if error is None:
                continue
            logger.warning("%s; try %d of %s fails", error, claim.try_number, claim.key)
            self.metrics.counter("celery.worker_lost")
            report = TryReport(
                "failed", error, worker_id=claim.worker_id, submission=claim.submission
            )
            self.store.tries.report_try(claim.key, claim.try_number, report)
