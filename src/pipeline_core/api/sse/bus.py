"""The in-process event bus: committed store events fanned out to subscribers.

Publishing never blocks: ``publish`` hands the batch to a dispatcher thread, so a committing
engine pays the same whatever the number of subscribers. Each subscriber has a bounded
backlog; one that falls behind is closed (``overflowed``) rather than slowing anyone, and
can resume from the store's event log with the last ``seq`` it saw. Events travel in
batches, filtered and encoded once for every group of subscribers that share a filter.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from pipeline_core.events import Event

Filter = Callable[[Event], bool]
Encoder = Callable[[Event], bytes]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A batch of events for one subscriber, with their wire bytes when it has an encoder."""

    events: list[Event]
    data: bytes = b""


class Subscription:
    """A subscriber's bounded backlog of deliveries."""

    def __init__(
        self,
        bus: EventBus,
        maxsize: int,
        accept: Filter | None,
        key: Hashable,
        encode: Encoder | None,
    ) -> None:
        self._bus = bus
        self._queue: queue.SimpleQueue[Delivery | None] = queue.SimpleQueue()
        self.accept = accept
        self.key = key
        self.encode = encode
        self._maxsize = maxsize
        self._backlog = 0
        self._lock = threading.Lock()
        self.overflowed = False
        self.closed = False
        #: Called (from the dispatcher) whenever a delivery is queued or the subscription
        #: closes, for consumers that wait on many subscriptions at once.
        self.on_ready: Callable[[], None] | None = None

    def offer(self, delivery: Delivery) -> None:
        """Queue an already filtered batch (the bus filters once per distinct ``key``)."""
        if self.closed or not delivery.events:
            return
        with self._lock:
            self._backlog += len(delivery.events)
            full = self._backlog > self._maxsize
        if full:
            self.overflowed = True
            self.close()
        else:
            self._queue.put(delivery)
            if self.on_ready is not None:
                self.on_ready()

    @property
    def pending(self) -> bool:
        """Whether deliveries are waiting to be taken."""
        return self._backlog > 0

    def get(self, timeout: float | None = None) -> Delivery | None:
        """Everything waiting (oldest first) as one delivery, or ``None`` on timeout or once
        closed."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if first is None:
            return None
        batches = [first]
        with contextlib.suppress(queue.Empty):
            while (more := self._queue.get_nowait()) is not None:
                batches.append(more)
        if len(batches) == 1:
            delivery = first
        else:
            events = [e for b in batches for e in b.events]
            delivery = Delivery(events, b"".join(b.data for b in batches))
        with self._lock:
            self._backlog -= len(delivery.events)
        return delivery

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus.unsubscribe(self)
        self._queue.put(None)  # wake a blocked get()
        if self.on_ready is not None:
            self.on_ready()


class EventBus:
    """Fan-out of events to subscriptions; safe to publish from any thread."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self._pending: queue.SimpleQueue[list[Event] | None] = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="event-bus", daemon=True)
        self._dispatcher.start()

    def subscribe(
        self,
        *,
        maxsize: int = 10_000,
        accept: Filter | None = None,
        key: Hashable = None,
        encode: Encoder | None = None,
    ) -> Subscription:
        """``key`` names the filter: subscribers with equal keys must accept the same events;
        the bus then filters (and encodes, with ``encode``) once for all of them."""
        subscription = Subscription(self, maxsize, accept, key if accept else None, encode)
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
        closing = False
        while not closing and (events := self._pending.get()) is not None:
            with contextlib.suppress(queue.Empty):  # coalesce what piled up meanwhile
                while (more := self._pending.get_nowait()) is not None:
                    events = events + more
                closing = True  # the stop came while coalescing: deliver these, then end
            with self._lock:
                subscriptions = list(self._subscriptions)
            prepared: dict[Hashable, Delivery] = {}
            for subscription in subscriptions:
                group = (subscription.key, subscription.encode)
                delivery = prepared.get(group)
                if delivery is None:
                    accept, encode = subscription.accept, subscription.encode
                    wanted = events if accept is None else [e for e in events if accept(e)]
                    data = b"".join(map(encode, wanted)) if encode is not None else b""
                    delivery = prepared[group] = Delivery(wanted, data)
                subscription.offer(delivery)

    def close_all(self) -> None:
        """End every subscription and the dispatcher."""
        self._pending.put(None)
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        self._dispatcher.join(timeout=5)
