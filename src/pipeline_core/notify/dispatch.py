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

from pipeline_core.errors import PipelineError
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import Event
from pipeline_core.notify.targets import Result, Targets
from pipeline_core.notify.wire import run_url
from pipeline_core.store.base import Store
from pipeline_core.store.types import AttemptOutcome, Notification

logger = logging.getLogger("pipeline_core.notify")
#: Events after which a notification may be due.
WAKING = ("task.state_changed", "run.state_changed", "deadline.missed", "notification.redelivery")
#: Longest sleep between looks at the outbox when no event comes (holds lapse, clocks move).
IDLE_LOOK = 1.0


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

    def _heard(self, events: list[Event]) -> None:
        if any(event.type in WAKING for event in events):
            self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                waited = self._round()
            except PipelineError as exc:
                logger.warning("cannot read the notification outbox: %s", exc)
                waited = IDLE_LOOK
            self._wake.wait(waited)

    def _round(self) -> float:
        """Hand out what is due; how long to wait before looking again."""
        now_ms = int(self.clock() * 1000)
        free = self._free_slots()
        if free:
            lease = int((self.settings.targets.timeout + 2.0) * 1000)
            for notification in self.store.notifications.claim_due(now_ms, lease, free):
                self._busy.acquire()
                self._pool.submit(self._deliver, notification)
        counts = self.store.notifications.notification_counts()
        self.metrics.gauge("notifications.pending", counts["pending"])
        due = self.store.notifications.next_due_ms()
        if due is None:
            return IDLE_LOOK
        return min(IDLE_LOOK, max(0.0, (due - now_ms) / 1000))

    def _free_slots(self) -> int:
        free = 0
        while self._busy.acquire(blocking=False):
            free += 1
        for _ in range(free):
            self._busy.release()
        return free

    def _deliver(self, notification: Notification) -> None:
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
            outcome = self._outcome(notification, result, elapsed)
            self.store.notifications.record_attempt(notification.id, outcome)
            self._count(notification, outcome)
        except PipelineError as exc:  # the hold lapses and the attempt is made again
            logger.warning("could not record a delivery of %s: %s", notification.id, exc)
        except Exception:  # a bug must not stop the dispatcher
            logger.exception("delivery of %s failed unexpectedly", notification.id)
        finally:
            self._busy.release()
            self._wake.set()

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
