"""The default store: one SQLite file in WAL mode, safe from many threads and processes.

Each thread gets its own connection. Writers take the database lock up front
(``BEGIN IMMEDIATE``) and, within a process, queue on a lock rather than spin in SQLite's
busy handler; across processes the busy timeout makes them wait instead of failing.

``:memory:`` (``memory://``) is one in-memory database for the whole process: a single
connection that every thread shares, every transaction (reads too) taken in turn, so what
one thread commits the next one sees.

``wait_for_events`` polls nothing: waiters of this process are told of its commits
directly, and other processes wake them through ``sqlite/wake.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline_core.errors import StoreUnavailable
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.claims import Claim, FileClaim, ProcessClaim
from pipeline_core.store.seq_waiter import SeqWaiter
from pipeline_core.store.sql import SqlStore
from pipeline_core.store.sql.core import COUNTER, read_on
from pipeline_core.store.sql.schema import SCHEMA_VERSION, migrate
from pipeline_core.store.sql.tx import Tx
from pipeline_core.store.sqlite.wake import WakeListener, WakeSender, wake_folder

TYPES = {"serial": "INTEGER", "bool": "INTEGER", "text": "TEXT", "dialect": "sqlite"}
BUSY_TIMEOUT_MS = 30_000


class SqliteStore(SqlStore):
    """``Store`` on a SQLite file (``sqlite:///path/file.db`` or a plain path)."""

    def __init__(
        self,
        path: str | Path,
        *,
        log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES,
        migrate_to: int = SCHEMA_VERSION,
    ) -> None:
        database = SqliteDatabase(path, migrate_to)
        super().__init__(database, log_cap_bytes=log_cap_bytes)
        self.path, self.in_memory = database.path, database.in_memory


class SqliteDatabase:
    """Connections to one SQLite file (one per thread) and the waiters of its events."""

    integrity_errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    read_retries = 0

    def __init__(self, path: str | Path, migrate_to: int = SCHEMA_VERSION) -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        # Per thread; connections of threads that ended are closed when the next one opens
        # (a server starts a thread per client connection).
        self._connections: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self.in_memory = self.path == ":memory:"
        self._shared: sqlite3.Connection | None = None
        self._waiter: SeqWaiter | None = None
        self._waiter_lock = threading.Lock()
        self._wakes = None if self.in_memory else WakeSender(wake_folder(self.path))
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._migrate(migrate_to)

    def _connect(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = self._shared or getattr(
            self._local, "connection", None
        )
        if connection is not None:
            return connection
        if self._closed:
            raise StoreUnavailable(f"store {self.url} is closed")
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Takes effect on a new file only (before its first table): space that deletes
            # free can then be given back a little at a time (``reclaim``).
            connection.execute("PRAGMA auto_vacuum = INCREMENTAL")
            _enable_wal(connection)
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.url}: {exc}") from None
        if self.in_memory:
            self._shared = connection
            return connection
        self._local.connection = connection
        with self._connections_lock:
            alive = []
            for owner, other in self._connections:
                if owner() is None:
                    other.close()
                else:
                    alive.append((owner, other))
            alive.append((weakref.ref(threading.current_thread()), connection))
            self._connections = alive
        return connection

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Tx]:
        connection = self._connect()
        lock = self._write_lock if write or self.in_memory else None
        if lock is not None:
            lock.acquire()
        try:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield Tx(cursor, _same)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            raise StoreUnavailable(f"database error on {self.url}: {exc}") from None
        finally:
            if lock is not None:
                lock.release()

    def _migrate(self, target: int) -> None:
        with self.transaction(write=True) as tx:
            migrate(tx, self.url, target, TYPES)

    def after_events(self, tx: Tx, last_seq: int) -> None:
        """Waiters are told after the commit (``after_commit``)."""

    def stop_waiting(self) -> None:
        self._closed = True
        with self._waiter_lock:
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()

    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        """Sleep until an event after ``after_seq`` is committed, by this process or (woken
        through ``sqlite/wake.py``) another one."""
        with self._waiter_lock:
            if self._waiter is None:
                if self._closed:
                    raise StoreUnavailable(f"store {self.url} is closed")
                self._waiter = (
                    SeqWaiter(self._counter())
                    if self.in_memory
                    else WakeListener(wake_folder(self.path), self._counter)
                )
            waiter = self._waiter
        return waiter.wait(after_seq, timeout)

    def claim(self, name: str, on_lost: Callable[[], None] | None = None) -> Claim | None:
        """A ``flock`` on ``<file>.<name>.lock`` (the kernel drops it with the process); in
        memory, a claim within this process."""
        if self.in_memory:
            return ProcessClaim.take(self, name)
        return FileClaim.take(Path(f"{self.path}.{name}.lock"), name)

    def _counter(self) -> int:
        return int(read_on(self, lambda tx: tx.scalar(COUNTER)))

    def after_commit(self, last_seq: int) -> None:
        waiter = self._waiter
        if waiter is not None:
            waiter.seen(last_seq)
        if self._wakes is not None:
            own = str(waiter.path) if isinstance(waiter, WakeListener) else None
            self._wakes.wake(skip=own)

    def reclaim(self, pages: int) -> int:
        """``PRAGMA incremental_vacuum`` of up to ``pages`` pages, between write transactions
        (a file made before incremental vacuum was switched on gives nothing back until a
        full ``VACUUM``)."""
        connection = self._connect()
        with self._write_lock:
            free, size = (
                int(connection.execute(f"PRAGMA {name}").fetchone()[0])
                for name in ("freelist_count", "page_size")
            )
            # The pragma frees a page per step; ``executescript`` steps it to the end.
            connection.executescript(f"PRAGMA incremental_vacuum({int(pages)})")
            left = int(connection.execute("PRAGMA freelist_count").fetchone()[0])
            return (free - left) * size

    def compact(self) -> int:
        connection = self._connect()
        with self._write_lock:
            before = self._bytes(connection)
            connection.executescript("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
            return before - self._bytes(connection)

    @staticmethod
    def _bytes(connection: sqlite3.Connection) -> int:
        pages, size = (
            int(connection.execute(f"PRAGMA {name}").fetchone()[0])
            for name in ("page_count", "page_size")
        )
        return pages * size

    def close(self) -> None:
        if self._wakes is not None:
            self._wakes.close()
        with self._write_lock:
            if self._shared is not None:
                self._shared.close()
                self._shared = None
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for _, connection in connections:
            connection.close()
        self._local = threading.local()


def _enable_wal(connection: sqlite3.Connection) -> None:
    """Switch to WAL. Two processes opening a new file at once can both need the lock that
    switching takes, and SQLite answers "locked" without waiting: retry within the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _same(sql: str) -> str:
    return sql
