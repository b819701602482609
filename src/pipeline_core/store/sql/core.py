"""``Sql``: what every aggregate's SQL stands on — transactions of a backend's ``Database``,
the events a transaction appends, and their publication after it commits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pipeline_core.errors import Conflict, StoreUnavailable
from pipeline_core.events import ACTOR, Event
from pipeline_core.model import iso, utcnow
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.sql.outbox import OutboxWriter
from pipeline_core.store.sql.rows import EVENT_COLUMNS, first_line
from pipeline_core.store.sql.tx import Tx

Listener = Callable[[list[Event]], None]
#: The newest event's ``seq``: what a waiter compares with the one it has seen.
COUNTER = "SELECT seq FROM event_counter WHERE id = 1"


@dataclass
class Pending:
    """Events appended inside the current transaction, published after it commits."""

    events: list[Event]


class ConnectionLost(StoreUnavailable):
    """A pooled connection the server had dropped: a read on it may be tried again."""


class Database(Protocol):
    """What a backend gives the SQL: transactions, and what happens around events."""

    url: str
    #: What the driver raises for a broken unique or foreign key constraint.
    integrity_errors: tuple[type[BaseException], ...]
    #: How many more times a read that met ``ConnectionLost`` is tried.
    read_retries: int

    def transaction(self, write: bool) -> AbstractContextManager[Tx]: ...

    def after_events(self, tx: Tx, last_seq: int) -> None:
        """Inside the transaction that appended events up to ``last_seq``."""
        ...

    def after_commit(self, last_seq: int) -> None:
        """Once a transaction that appended events up to ``last_seq`` committed."""
        ...

    def reclaim(self, pages: int) -> int:
        """Give up to ``pages`` free pages back to the file system; how many bytes."""
        ...

    def compact(self) -> int:
        """Rewrite the database, giving all free space back; how many bytes."""
        ...


class Sql:
    """Transactions on one ``Database`` for every aggregate of a store: ``write`` and
    ``read`` run a piece of work in one, ``append`` adds events to the log inside it, and
    the listeners hear of them once it commits."""

    def __init__(self, database: Database, *, log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES) -> None:
        self.database = database
        self.log_cap_bytes = log_cap_bytes
        #: What "now" is for timestamps; tests inject a fake clock here.
        self.clock: Callable[[], datetime] = utcnow
        #: Writes the notifications that appended events cause, in their transaction.
        self.outbox = OutboxWriter()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(events)`` after every commit that appended events."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def write(self, work: Callable[[Tx, Pending], Any]) -> Any:
        """``work`` in one write transaction; its events are announced once it commits."""
        pending = Pending([])
        try:
            with self.database.transaction(write=True) as tx:
                result = work(tx, pending)
        except self.database.integrity_errors as exc:
            raise Conflict(f"already exists: {first_line(exc)}") from None
        if pending.events:
            self.announce(pending.events[-1].seq, pending.events)
        return result

    def read(self, work: Callable[[Tx], Any]) -> Any:
        return read_on(self.database, work)

    def announce(self, last_seq: int, events: list[Event]) -> None:
        """Tell the database's waiters and this store's listeners of committed events."""
        self.database.after_commit(last_seq)
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(events)

    def append(
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
        actor = ACTOR.get()
        extra = {"actor": actor} if actor else {}
        events = [
            Event(first + i, kind, now, dag_id, run_id, task_id, {**payload, **extra})
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
        self.outbox.record(tx, events, now)
        self.database.after_events(tx, last)
        pending.events.extend(events)
        return events


def read_on(database: Database, work: Callable[[Tx], Any]) -> Any:
    """``work`` in one read transaction of ``database``, tried again on another connection
    if the one it had was dropped by the server (a restart)."""
    for _ in range(database.read_retries):
        try:
            with database.transaction(write=False) as tx:
                return work(tx)
        except ConnectionLost:
            continue
    with database.transaction(write=False) as tx:
        return work(tx)
