"""The in-process event bus: committed store events fanned out to subscribers.

Publishing never blocks: each subscriber has a bounded queue, and a subscriber that falls
behind is closed (``overflowed``) instead of slowing the publisher; it can resume from the
store's event log with the last ``seq`` it saw.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable

from pipeline_core.store.types import Event

Filter = Callable[[Event], bool]


class Subscription:
    """A subscriber's bounded queue of events."""

    def __init__(self, bus: EventBus, maxsize: int, accept: Filter | None) -> None:
        self._bus = bus
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize)
        self._accept = accept
        self.overflowed = False
        self.closed = False

    def offer(self, event: Event) -> None:
        if self.closed or (self._accept is not None and not self._accept(event)):
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.overflowed = True
            self.close()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or ``None`` on timeout or once closed (check ``closed``)."""
        if self.closed and self._queue.empty():
            return None
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus.unsubscribe(self)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wake a blocked get()


class EventBus:
    """Fan-out of events to subscriptions; safe to publish from any thread.

    ``publish`` only hands the batch to a dispatcher thread, so a committing engine pays the
    same whatever the number of subscribers.
    """

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._pending: queue.SimpleQueue[list[Event] | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="event-bus", daemon=True)
        self._dispatcher.start()

    def subscribe(self, *, maxsize: int = 10_000, accept: Filter | None = None) -> Subscription:
        subscription = Subscription(self, maxsize, accept)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def publish(self, events: Iterable[Event]) -> None:
        """Queue events for delivery; never blocks."""
        self._pending.put(list(events))

    def _dispatch(self) -> None:
        while (events := self._pending.get()) is not None:
            with self._lock:
                subscriptions = list(self._subscriptions)
            for event in events:
                for subscription in subscriptions:
                    subscription.offer(event)

    def close_all(self) -> None:
        """End every subscription and the dispatcher."""
        self._pending.put(None)
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        self._dispatcher.join(timeout=5)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscriptions)
