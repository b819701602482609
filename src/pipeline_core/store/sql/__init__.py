"""The SQL behind both relational backends, one object per aggregate.

SQLite and PostgreSQL differ only in how they connect, their DDL, placeholders, error classes
and how waiters wake (a ``Backend``); everything else is here. Statements are written with
``?`` placeholders; a backend rewrites them once if it needs to. Timestamps are stored as
fixed-width ISO 8601 text (``iso``), so text order is time order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.feed import EventFeed
from pipeline_core.store.sql.accounts import AccountsSql
from pipeline_core.store.sql.assets import AssetsSql
from pipeline_core.store.sql.backfills import BackfillsSql
from pipeline_core.store.sql.core import Database, Listener, Sql
from pipeline_core.store.sql.credentials import CredentialsSql
from pipeline_core.store.sql.dags import DagsSql
from pipeline_core.store.sql.events import EventsSql
from pipeline_core.store.sql.heartbeats import HeartbeatsSql
from pipeline_core.store.sql.notifications import NotificationsSql
from pipeline_core.store.sql.pools import PoolsSql
from pipeline_core.store.sql.retention import RetentionSql
from pipeline_core.store.sql.runs import RunsSql
from pipeline_core.store.sql.taskdata import TaskDataSql
from pipeline_core.store.sql.tasks import TasksSql
from pipeline_core.store.sql.tries import TriesSql

if TYPE_CHECKING:
    from pipeline_core.store.claims import Claim


class Backend(Database, Protocol):
    """A ``Database`` that also wakes waiters for new events and grants claims."""

    def wait_for_events(self, after_seq: int, timeout: float) -> bool: ...

    def claim(self, name: str, on_lost: Callable[[], None] | None = None) -> Claim | None: ...

    def stop_waiting(self) -> None:
        """Wake every waiter for good: the store is closing."""
        ...

    def close(self) -> None: ...


class SqlStore:
    """The ``Store`` protocol in SQL: the store owns one object per aggregate (``runs``,
    ``tasks``, ``dags``, ...), all on one ``Sql`` over its backend, and the event feed its
    process's consumers share."""

    supports_notify = False

    def __init__(self, backend: Backend, *, log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES) -> None:
        self.backend = backend
        self.url = backend.url
        self.sql = sql = Sql(backend, log_cap_bytes=log_cap_bytes)
        self.runs = RunsSql(sql)
        self.tasks = TasksSql(sql)
        self.task_data = TaskDataSql(sql)
        self.dags = DagsSql(sql)
        self.pools = PoolsSql(sql)
        self.heartbeats = HeartbeatsSql(sql)
        self.tries = TriesSql(sql)
        self.backfills = BackfillsSql(sql)
        self.events = EventsSql(sql)
        self.notifications = NotificationsSql(sql)
        self.assets = AssetsSql(sql)
        self.credentials = CredentialsSql(sql)
        self.accounts = AccountsSql(sql)
        self.retention = RetentionSql(sql)
        self._feed: EventFeed | None = None
        self._feed_lock = threading.Lock()

    @property
    def clock(self) -> Callable[[], datetime]:
        """What "now" is for the store's timestamps (tests set a fake one)."""
        return self.sql.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.sql.clock = clock

    @property
    def log_cap_bytes(self) -> int:
        return self.sql.log_cap_bytes

    @log_cap_bytes.setter
    def log_cap_bytes(self, cap: int) -> None:
        self.sql.log_cap_bytes = cap

    @property
    def feed(self) -> EventFeed:
        """The event feed this process's consumers of the store share."""
        with self._feed_lock:
            if self._feed is None:
                self._feed = EventFeed(self)
            return self._feed

    def add_listener(self, listener: Listener) -> None:
        self.sql.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.sql.remove_listener(listener)

    def ping(self) -> None:
        self.sql.read(lambda tx: tx.scalar("SELECT 1"))

    def schema_version(self) -> int:
        return int(self.sql.read(lambda tx: tx.scalar("SELECT MAX(version) FROM schema_version")))

    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        return self.backend.wait_for_events(after_seq, timeout)

    def claim(self, name: str, on_lost: Callable[[], None] | None = None) -> Claim | None:
        return self.backend.claim(name, on_lost)

    def close(self) -> None:
        """Stop the feed, wake every waiter (a follower asleep in ``wait_for_events``
        returns at once), let the feed's follower leave, then close the connections."""
        with self._feed_lock:
            feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()
        self.backend.stop_waiting()
        if feed is not None:
            feed.close()
        self.backend.close()


__all__ = ["Backend", "SqlStore"]
