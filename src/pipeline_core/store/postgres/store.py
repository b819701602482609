"""PostgreSQL store (the ``postgres`` extra: psycopg 3 with a connection pool).

Writers that append events serialise on one counter row, so event ``seq`` numbers commit in
order; every event-appending transaction also sends ``NOTIFY`` so that waiting readers wake
without polling. ``?schema=NAME`` in the URL keeps every table in that schema (created on open).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pipeline_core.errors import ConfigurationError, StoreUnavailable
from pipeline_core.model import iso
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.claims import AdvisoryClaim, Claim
from pipeline_core.store.postgres.listener import Listener, cause, split_schema
from pipeline_core.store.postgres.one_call import OneCallRuns, OneCallTasks
from pipeline_core.store.sql import SqlStore
from pipeline_core.store.sql.common import masked_url
from pipeline_core.store.sql.core import COUNTER, ConnectionLost, read_on
from pipeline_core.store.sql.schema import SCHEMA_VERSION, migrate
from pipeline_core.store.sql.tx import Tx

try:
    import psycopg
    import psycopg_pool
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg = None  # type: ignore[assignment]
    psycopg_pool = None  # type: ignore[assignment]

TYPES = {"serial": "BIGSERIAL", "bool": "BOOLEAN", "text": "TEXT", "dialect": "postgresql"}


class PostgresStore(SqlStore):
    """``Store`` on PostgreSQL (``postgresql://user:password@host:5432/db[?schema=NAME]``)."""

    supports_notify = True

    def __init__(
        self,
        url: str,
        *,
        log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES,
        pool_size: int = 8,
        migrate_to: int = SCHEMA_VERSION,
    ) -> None:
        database = PostgresDatabase(url, pool_size=pool_size, migrate_to=migrate_to)
        super().__init__(database, log_cap_bytes=log_cap_bytes)
        self.schema, self.pool = database.schema, database.pool
        if migrate_to >= 6:  # the schema has the one-call functions
            self.runs = OneCallRuns(self.sql, database)
            self.tasks = OneCallTasks(self.sql, database)


class PostgresDatabase:
    """A connection pool on one database (and schema), the functions that write in one
    round trip, and the LISTEN connection that wakes waiters."""

    def __init__(self, url: str, *, pool_size: int, migrate_to: int) -> None:
        if psycopg is None or psycopg_pool is None:
            raise ConfigurationError(
                "PostgreSQL support needs the 'postgres' extra: "
                "pip install 'pipeline-core[postgres]'"
            )
        self.integrity_errors: tuple[type[BaseException], ...] = (psycopg.IntegrityError,)
        self.url = masked_url(url)
        conninfo, self.schema = split_schema(url)
        self.channel = f"pipeline_core_events_{self.schema or 'public'}"[:63]
        self._rewrites: dict[str, str] = {}
        self._listener: Listener | None = None
        self._listener_lock = threading.Lock()
        self._closed = False
        self._conninfo = conninfo
        try:
            # One direct attempt first: a refused or unknown server fails at once, with the
            # server's own message, instead of after the pool's retry timeout.
            psycopg.connect(conninfo, connect_timeout=10).close()
            self.pool = psycopg_pool.ConnectionPool(
                conninfo,
                min_size=1,
                max_size=pool_size,
                configure=self._configure,
                open=True,
                timeout=10,
            )
            self.pool.wait(timeout=10)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(f"cannot connect to {self.url}: {cause(exc)}") from None
        #: A read that met a connection the server had dropped is tried on the next one.
        self.read_retries = pool_size
        self._migrate(migrate_to)

    def _configure(self, connection: Any) -> None:
        if self.schema:
            connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            connection.execute(f'SET search_path TO "{self.schema}"')
        connection.commit()

    def _rewrite(self, sql: str) -> str:
        rewritten = self._rewrites.get(sql)
        if rewritten is None:
            rewritten = self._rewrites[sql] = sql.replace("%", "%%").replace("?", "%s")
        return rewritten

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Tx]:
        """A write in a transaction; a read without one: at READ COMMITTED each statement
        takes its own snapshot inside a transaction too, so a read's ``BEGIN`` and ``COMMIT``
        would only be two more round trips."""
        try:
            with self.pool.connection() as connection:
                if write:
                    with connection.transaction():
                        yield Tx(connection.cursor(), self._rewrite)
                    return
                connection.autocommit = True
                try:
                    yield Tx(connection.cursor(), self._rewrite)
                finally:
                    if not connection.closed:
                        connection.autocommit = False
        except psycopg.IntegrityError:
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise ConnectionLost(f"database error on {self.url}: {cause(exc)}") from None
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable(f"database error on {self.url}: {cause(exc)}") from None

    def call(self, function: str, payload: str, at: datetime) -> list[Any] | None:
        """One autocommit call; ``None`` when the function refused (something not as
        expected, nothing written). A dead pooled connection is tried again with the next
        (had the call run, the next attempt finds things moved and refuses)."""
        sql = f"SELECT * FROM {function}(%s::jsonb, %s, %s)"
        for attempt in range(self.pool.max_size + 1):
            try:
                with self.pool.connection() as connection:
                    connection.autocommit = True
                    try:
                        rows: list[Any] = connection.execute(
                            sql, (payload, iso(at), self.channel)
                        ).fetchall()
                        return rows
                    finally:
                        if not connection.closed:
                            connection.autocommit = False
            except psycopg.errors.RaiseException:
                return None
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt == self.pool.max_size:
                    raise StoreUnavailable(f"database error on {self.url}: {cause(exc)}") from None
            except psycopg_pool.PoolTimeout as exc:
                raise StoreUnavailable(f"database error on {self.url}: {cause(exc)}") from None
        raise AssertionError("unreachable")

    def after_events(self, tx: Tx, last_seq: int) -> None:
        tx.rows("SELECT pg_notify(?, ?)", (self.channel, str(last_seq)))

    def after_commit(self, last_seq: int) -> None:
        """Waiters hear of the commit through its ``NOTIFY``."""

    def reclaim(self, pages: int) -> int:
        """Autovacuum makes the space of deleted rows reusable; nothing to do."""
        return 0

    def compact(self) -> int:
        return 0

    def _migrate(self, target: int) -> None:
        with self.transaction(write=True) as tx:
            tx.rows("SELECT pg_advisory_xact_lock(hashtext('pipeline_core_migrate'))")
            migrate(tx, self.url, target, TYPES)

    def _counter(self) -> int:
        return int(read_on(self, lambda tx: tx.scalar(COUNTER)))

    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        """Block on LISTEN/NOTIFY (one listening connection per store) until ``seq`` passes."""
        with self._listener_lock:
            if self._closed:
                raise StoreUnavailable(f"store {self.url} is closed")
            if self._listener is None:
                self._listener = Listener(self._conninfo, self.channel)
            listener = self._listener
        listener.seen(self._counter())
        return listener.wait(after_seq, timeout)

    def claim(self, name: str, on_lost: Callable[[], None] | None = None) -> Claim | None:
        """A session advisory lock on a connection of its own (the server drops it with the
        connection, so with the process)."""

        def connect() -> Any:
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)

        try:
            return AdvisoryClaim.take(connect, name, on_lost or (lambda: None), scope=self.schema)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot claim {name!r} on {self.url}: {cause(exc)}") from None

    def close(self) -> None:
        self.pool.close()

    def stop_waiting(self) -> None:
        with self._listener_lock:
            self._closed = True
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
