"""``SqlBase``: what every SQL module stands on — transactions (a backend hook), the events
a transaction appends and their publication after commit, and the store's feed."""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline_core.errors import Conflict
from pipeline_core.model import Event, iso, utcnow
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.feed import EventFeed
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.sql.rows import EVENT_COLUMNS, first_line
from pipeline_core.store.sql.tx import Tx

Listener = Callable[[list[Event]], None]


@dataclass
class Pending:
    """Events appended inside the current transaction, published after it commits."""

    events: list[Event]


class SqlBase:
    """Plumbing of the SQL store; backends implement ``_transaction``."""

    url: str
    supports_notify = False
    integrity_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, *, log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES) -> None:
        self.log_cap_bytes = log_cap_bytes
        #: What "now" is for timestamps; tests inject a fake clock here.
        self.clock: Callable[[], datetime] = utcnow
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._feed: EventFeed | None = None
        self._feed_lock = threading.Lock()

    @property
    def feed(self) -> EventFeed:
        """The event feed this process's consumers of the store share."""
        with self._feed_lock:
            if self._feed is None:
                self._feed = EventFeed(self)  # type: ignore[arg-type]  # a whole Store by now
            return self._feed

    def _close_feed(self, wake: Callable[[], None] = lambda: None) -> None:
        """Stop the feed, then ``wake`` (the backend closes its waiter, so a follower asleep
        in ``wait_for_events`` returns at once), then wait for its follower to leave."""
        with self._feed_lock:
            feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()
        wake()
        if feed is not None:
            feed.close()

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]: ...

    def _after_events(self, tx: Tx, last_seq: int) -> None:
        """Called inside the transaction that appended events up to ``last_seq``."""

    def _after_commit(self, last_seq: int) -> None:
        """Called once a transaction that appended events up to ``last_seq`` committed."""

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(events)`` after every commit that appended events."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _write(self, work: Callable[[Tx, Pending], Any]) -> Any:
        pending = Pending([])
        try:
            with self._transaction(write=True) as tx:
                result = work(tx, pending)
        except self.integrity_errors as exc:
            raise Conflict(f"already exists: {first_line(exc)}") from None
        if pending.events:
            self._after_commit(pending.events[-1].seq)
            self._publish(pending.events)
        return result

    def _read(self, work: Callable[[Tx], Any]) -> Any:
        with self._transaction(write=False) as tx:
            return work(tx)

    def _publish(self, events: list[Event]) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(events)

    def _append(
        self,
        tx: Tx,
        pending: Pending,
        items: Sequence[tuple[str, Mapping[str, Any], str | None, str | None, str | None]],
        now: datetime,
    ) -> list[Event]:
        if not items:
            return []
        last = int(
            tx.scalar(
                "UPDATE event_counter SET seq = seq + ? WHERE id = 1 RETURNING seq", (len(items),)
            )
        )
        first = last - len(items) + 1
        events = [
            Event(first + i, kind, now, dag_id, run_id, task_id, dict(payload))
            for i, (kind, payload, dag_id, run_id, task_id) in enumerate(items)
        ]
        tx.many(
            f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.seq,
                    e.type,
                    iso(now),
                    e.dag_id,
                    e.run_id,
                    e.task_id,
                    to_json(e.payload, "event"),
                )
                for e in events
            ],
        )
        self._after_events(tx, last)
        pending.events.extend(events)
        return events

    def ping(self) -> None:
        self._read(lambda tx: tx.scalar("SELECT 1"))
