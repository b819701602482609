"""``EventFeed``: the one way to follow the event log. Every consumer — the engine, the
scheduler, the API's cache and live streams, metrics — gets committed events through it, in
``seq`` order, each exactly once, whichever process wrote them.

Two paths lead in, one leads out:

* **this process's commits** (the fast path): the store calls the feed right after each
  commit, in the committing thread; when the batch follows on from the last event delivered,
  it goes straight to the subscribers — no read, no delay;
* **other processes' commits**: a follower thread waits on the store (``wait_for_events``:
  a short poll of one row on SQLite, LISTEN/NOTIFY on PostgreSQL, or a caller's own signal)
  and catches up from the log.

Whenever a batch does not follow on (another process or thread committed in between), the
feed reads the gap from the log first, so subscribers never see a hole or a repeat.
Subscribers are called under the feed's lock: they must be quick and must not write to the
store (they hand events to their own queue or thread).

Every store has one (``store.feed``) that its consumers in this process share; a process
that learns of commits its own way (the API's stream process) makes its own with ``wait``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pipeline_core.events import Event
from pipeline_core.store.base import Store
from pipeline_core.store.types import EventQuery

logger = logging.getLogger("pipeline_core.store")
Subscriber = Callable[[list[Event]], None]
Wait = Callable[[int, float], bool]
PAGE = 1000


class EventFeed:
    def __init__(self, store: Store, *, wait: Wait | None = None) -> None:
        """``wait(after_seq, timeout)`` tells when other processes may have written (default:
        the store's ``wait_for_events``)."""
        self.store = store
        self.wait = wait or store.wait_for_events
        self.last_seq = store.events.event_bounds()[1]
        self._subscribers: list[tuple[Subscriber, bool]] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        store.add_listener(self._committed)

    def subscribe(self, subscriber: Subscriber, *, other_processes: bool = True) -> None:
        """Deliver every event committed from now on to ``subscriber``; with
        ``other_processes``, those that other processes commit too."""
        with self._lock:
            self._subscribers.append((subscriber, other_processes))
            if other_processes and self._follower is None:
                self._stop.clear()
                self._follower = threading.Thread(
                    target=self._follow, name="event-feed", daemon=True
                )
                self._follower.start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers = [(s, o) for s, o in self._subscribers if s is not subscriber]
            follower = self._follower
            if follower is None or any(o for _, o in self._subscribers):
                return
            self._follower = None
            self._stop.set()
        if follower is not threading.current_thread():
            follower.join(timeout=5)

    def stop(self) -> None:
        """Subscribers get nothing more; the follower leaves at its next wake-up (a store
        that closes wakes it at once by closing its waiter)."""
        with self._lock:
            self._subscribers = []
            self._stop.set()
        self.store.remove_listener(self._committed)

    def close(self) -> None:
        """Stop following, and wait for the follower to leave."""
        self.stop()
        with self._lock:
            follower, self._follower = self._follower, None
        if follower is not None and follower is not threading.current_thread():
            follower.join(timeout=5)

    # --- paths in ----------------------------------------------------------------------------
    def _committed(self, events: list[Event]) -> None:
        try:
            self._deliver(events)
        except Exception:  # a store listener must not raise into the committing thread
            logger.exception("delivering committed events failed")

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                # Woken by the commits of other processes; the timeout is only a safety net
                # (a wake-up lost), so an idle follower wakes once a second at most.
                if self.wait(self.last_seq, 1.0):
                    self._deliver(None)
            except Exception:
                logger.exception("following the event log failed; retrying")
                self._stop.wait(1.0)

    def _deliver(self, batch: list[Event] | None) -> None:
        with self._lock:
            if batch is not None:
                fresh = [e for e in batch if e.seq > self.last_seq]
                if not fresh:
                    return
                if fresh[0].seq == self.last_seq + 1:
                    self._hand_out(fresh)
                    return
            while events := self.store.events.read_events(
                EventQuery(after_seq=self.last_seq, limit=PAGE)
            ):
                self._hand_out(events)
                if len(events) < PAGE:
                    return

    def _hand_out(self, events: list[Event]) -> None:
        self.last_seq = events[-1].seq
        for subscriber, _ in self._subscribers:
            try:
                subscriber(events)
            except Exception:
                logger.exception("an event subscriber failed")
