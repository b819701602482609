"""``EventTail``: follow the store's event log from another process's point of view.

A thread waits on the store (``wait_for_events``: a short poll of one row on SQLite,
LISTEN/NOTIFY on PostgreSQL) — or on a caller's own signal — and hands every new event, in
``seq`` order, to a callback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pipeline_core.store.base import Store
from pipeline_core.store.types import Event, EventQuery

logger = logging.getLogger("pipeline_core.store")
PAGE = 1000


class EventTail:
    def __init__(
        self,
        store: Store,
        on_events: Callable[[list[Event]], None],
        *,
        after_seq: int | None = None,
        wait: Callable[[int, float], bool] | None = None,
    ) -> None:
        """``wait(after_seq, timeout)`` tells when to look for new events (default: the
        store's ``wait_for_events``)."""
        self.store = store
        self.on_events = on_events
        self.wait = wait or store.wait_for_events
        self.last_seq = store.event_bounds()[1] if after_seq is None else after_seq
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="event-tail", daemon=True)

    def start(self) -> EventTail:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.wait(self.last_seq, 0.5):
                    continue
                while not self._stop.is_set():
                    events = self.store.read_events(EventQuery(after_seq=self.last_seq, limit=PAGE))
                    if not events:
                        break
                    self.last_seq = events[-1].seq
                    self.on_events(events)
            except Exception:
                logger.exception("following the event log failed; retrying")
                self._stop.wait(1.0)
