"""The dispatcher: follows the event log and delivers the outbox.

Every committed event wakes it (``store.feed``, other processes' included); it then holds
the notifications that are due (a hold lapses after the delivery timeout, so one held by a
dispatcher that died is delivered by the next), hands each to a delivery thread, and records
what came of the attempt. Attempts that may succeed later are due again after an
exponential backoff, until the attempts run out. Nothing here runs on the engine's thread or
the API's, and nothing is decided from memory: a restart, a kill -9 or a failover resumes
from the outbox as stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pipeline_core.errors import NotFound, PipelineError
from pipeline_core.events import Event
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.notify.targets import Result, Targets
from pipeline_core.notify.wire import run_url
from pipeline_core.store.base import Store
from pipeline_core.store.notices import DagRules, kind_of
from pipeline_core.store.types import AttemptOutcome, Notification

logger = logging.getLogger("pipeline_core.notify")
#: Longest sleep between looks at the outbox when no event comes (holds lapse, clocks move).
IDLE_LOOK = 1.0
#: With nothing due, the outbox is read again when an event may have added to it (or
#: another process's delivery ended); this long at most in any case.
QUIET_LOOK = 60.0
NEVER = 2**62


@dataclass(frozen=True)
class DeliverySettings:
    """How the outbox is delivered: the targets (timeout, SMTP), attempts and backoff, the
    dashboard's public URL, and how many deliveries run at once."""

    targets: Targets = field(default_factory=Targets)
    max_attempts: int = 12
    backoff: float = 1.0
    max_backoff: float = 300.0
    public_url: str = "http://127.0.0.1:8080"
    concurrency: int = 8
    #: Seconds an ending event waits for the ones committed right after it, so a burst is
    #: held and recorded in a few transactions rather than one per notification.
    gather: float = 0.005

    def delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1`` (``attempt`` ≥ 1 already made)."""
        return float(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


class Dispatcher:
    def __init__(
        self,
        store: Store,
        settings: DeliverySettings | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: wall time in seconds, the outbox's due times being wall milliseconds."""
        self.store = store
        self.settings = settings or DeliverySettings()
        self.metrics: Metrics = metrics or NullMetrics()
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = threading.Semaphore(self.settings.concurrency)
        self._pool = ThreadPoolExecutor(self.settings.concurrency, "notify-deliver")
        self._thread = threading.Thread(target=self._loop, name="notify-dispatch", daemon=True)
        self._lock = threading.Lock()
        self._heard_dags: set[str] = set()
        self._stale: set[str] = set()
        self._freed = False
        self._finished: list[tuple[Notification, AttemptOutcome]] = []
        self._rules: dict[str, bool] = {}
        self._next_due_ms = 0  # look at once on start: what a previous process left
        self._counted_ms = 0

    def start(self) -> Dispatcher:
        self.store.feed.subscribe(self._heard, other_processes=True)
        self._thread.start()
        return self

    def stop(self, wait: float = 5.0) -> None:
        """Stop holding notifications; deliveries under way finish within ``wait`` seconds
        or are left to their hold lapsing (delivered again after a restart, same id)."""
        self._stop.set()
        self._wake.set()
        self.store.feed.unsubscribe(self._heard)
        self._thread.join(wait)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._record_finished()

    def _heard(self, events: list[Event]) -> None:
        """On the committing thread: only note which DAGs may have new notifications."""
        ended = {e.dag_id for e in events if e.dag_id is not None and kind_of(e) is not None}
        stale = {e.dag_id for e in events if e.dag_id is not None and e.type == "dag.updated"}
        asked = any(e.type == "notification.redelivery" for e in events)
        if ended or stale or asked:
            with self._lock:
                self._heard_dags |= ended
                self._stale |= stale
                self._freed = self._freed or asked
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.settings.gather)
            self._wake.clear()
            try:
                self._record_finished()
                waited = self._round()
            except PipelineError as exc:
                logger.warning("cannot read the notification outbox: %s", exc)
                waited = IDLE_LOOK
            self._wake.wait(waited)

    def _round(self) -> float:
        """Hand out what is due; how long to wait before looking again. The outbox is only
        read when something may be due: an ending event of a DAG with rules, a delivery
        that ended (its slot is free), a redelivery, or the time one was known to be due."""
        now_ms = int(self.clock() * 1000)
        with self._lock:
            heard, self._heard_dags = self._heard_dags, set()
            stale, self._stale = self._stale, set()
            freed, self._freed = self._freed, False
        for dag_id in stale:
            self._rules.pop(dag_id, None)
        due = now_ms >= self._next_due_ms or freed or any(map(self._has_rules, heard))
        free = self._free_slots()
        if due and free:
            lease = int((self.settings.targets.timeout + 2.0) * 1000)
            for notification in self.store.notifications.claim_due(now_ms, lease, free):
                self._busy.acquire()
                self._pool.submit(self._deliver, notification)
            next_due = self.store.notifications.next_due_ms()
            self._next_due_ms = NEVER if next_due is None else next_due
        if (due or heard) and now_ms >= self._counted_ms + int(IDLE_LOOK * 1000):
            self._counted_ms = now_ms
            counts = self.store.notifications.notification_counts()
            self.metrics.gauge("notifications.pending", counts["pending"])
        if self._next_due_ms == NEVER:
            return QUIET_LOOK  # woken by what may make a notification; this is a safety net
        return min(IDLE_LOOK, max(0.0, (self._next_due_ms - now_ms) / 1000))

    def _has_rules(self, dag_id: str) -> bool:
        if dag_id not in self._rules:
            try:
                definition = self.store.dags.get_dag(dag_id).definition
            except NotFound:
                definition = None
            self._rules[dag_id] = bool(DagRules.of(definition))
        return self._rules[dag_id]

    def _free_slots(self) -> int:
        free = 0
        while self._busy.acquire(blocking=False):
            free += 1
        for _ in range(free):
            self._busy.release()
        return free

    def _deliver(self, notification: Notification) -> None:
        """On a delivery thread: make the attempt; the loop records it (with the others
        that ended meanwhile, in one transaction)."""
        try:
            started = time.monotonic()
            payload = dict(notification.payload)
            payload["url"] = run_url(
                self.settings.public_url, notification.dag_id, notification.run_id
            )
            result = self.settings.targets.deliver(
                notification.target_kind, notification.target, payload
            )
            elapsed = int((time.monotonic() - started) * 1000)
            with self._lock:
                self._finished.append((notification, self._outcome(notification, result, elapsed)))
        except Exception:  # a bug must not stop the dispatcher; the hold lapses, it is retried
            logger.exception("delivery of %s failed unexpectedly", notification.id)
        finally:
            self._busy.release()
            with self._lock:
                self._freed = True
            self._wake.set()

    def _record_finished(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        if not finished:
            return
        try:
            self.store.notifications.record_attempts([(n.id, o) for n, o in finished])
        except NotFound:  # one is gone (its run was deleted): record the others alone
            for notification, outcome in finished:
                try:
                    self.store.notifications.record_attempts([(notification.id, outcome)])
                except NotFound:
                    continue
        except PipelineError as exc:  # the holds lapse and the attempts are made again
            logger.warning("could not record %d deliveries: %s", len(finished), exc)
            return
        for notification, outcome in finished:
            self._count(notification, outcome)

    def _outcome(self, notification: Notification, result: Result, elapsed: int) -> AttemptOutcome:
        attempt = notification.attempts + 1
        if result.ok:
            return AttemptOutcome("delivered", result.status, None, elapsed)
        if result.final or attempt >= self.settings.max_attempts:
            error = (
                result.error
                if result.final
                else f"{result.error} (gave up after {attempt} attempts)"
            )
            return AttemptOutcome("failed", result.status, error, elapsed)
        due = int((self.clock() + self.settings.delay(attempt)) * 1000)
        return AttemptOutcome("pending", result.status, result.error, elapsed, due)

    def _count(self, notification: Notification, outcome: AttemptOutcome) -> None:
        labels = {"target": notification.target_kind, "event": notification.event}
        self.metrics.counter("notifications.attempts", **labels)
        if outcome.state == "delivered":
            self.metrics.counter("notifications.delivered", **labels)
            latency = self.clock() * 1000 - notification.created_at.timestamp() * 1000
            self.metrics.histogram("notifications.latency_ms", max(0.0, latency), **labels)
        elif outcome.state == "failed":
            self.metrics.counter("notifications.failed", **labels)
            logger.warning("notification %s failed for good: %s", notification.id, outcome.error)


__all__ = ["DeliverySettings", "Dispatcher"]
