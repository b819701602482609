"""PostgreSQL store (the ``postgres`` extra: psycopg 3 with a connection pool).

Writers that append events serialise on one counter row, so event ``seq`` numbers commit in
order; every event-appending transaction also sends ``NOTIFY`` so that waiting readers wake
without polling. ``?schema=NAME`` in the URL keeps every table in that schema (created on open).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline_core.errors import ConfigurationError, StoreUnavailable
from pipeline_core.model import TaskChange, TaskInstance, Write, iso
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.claims import AdvisoryClaim, Claim
from pipeline_core.store.postgres.writes import events_of, may_go_in_one_call, writes_json
from pipeline_core.store.seq_waiter import SeqWaiter
from pipeline_core.store.sql import SqlStore
from pipeline_core.store.sql.common import masked_url
from pipeline_core.store.sql.rows import ti_from_row
from pipeline_core.store.sql.schema import SCHEMA_VERSION, migrate
from pipeline_core.store.sql.tx import Tx

try:
    import psycopg
    import psycopg_pool
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg = None  # type: ignore[assignment]
    psycopg_pool = None  # type: ignore[assignment]

TYPES = {"serial": "BIGSERIAL", "bool": "BOOLEAN", "text": "TEXT", "dialect": "postgresql"}
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


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
        if psycopg is None or psycopg_pool is None:
            raise ConfigurationError(
                "PostgreSQL support needs the 'postgres' extra: "
                "pip install 'pipeline-core[postgres]'"
            )
        super().__init__(log_cap_bytes=log_cap_bytes)
        self.integrity_errors = (psycopg.IntegrityError,)
        self.url = masked_url(url)
        conninfo, self.schema = _split_schema(url)
        self.channel = f"pipeline_core_events_{self.schema or 'public'}"[:63]
        self._rewrites: dict[str, str] = {}
        self._listener: _Listener | None = None
        self._listener_lock = threading.Lock()
        self._closed = False
        self._conninfo = conninfo
        try:
            # One direct attempt first: a refused or unknown server fails at once, with the
            # server's own message, instead of after the pool's retry timeout.
            psycopg.connect(conninfo, connect_timeout=10).close()
            self._pool = psycopg_pool.ConnectionPool(
                conninfo,
                min_size=1,
                max_size=pool_size,
                configure=self._configure,
                open=True,
                timeout=10,
            )
            self._pool.wait(timeout=10)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(f"cannot connect to {self.url}: {_cause(exc)}") from None
        self._migrate(migrate_to)
        #: Whether the schema has the one-call functions (version 6 on).
        self._one_call = migrate_to >= 6

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
    def _transaction(self, write: bool) -> Iterator[Tx]:
        try:
            with self._pool.connection() as connection, connection.transaction():
                yield Tx(connection.cursor(), self._rewrite)
        except psycopg.IntegrityError:
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise _ConnectionLost(f"database error on {self.url}: {_cause(exc)}") from None
        except psycopg_pool.PoolTimeout as exc:
            raise StoreUnavailable(f"database error on {self.url}: {_cause(exc)}") from None

    def _read(self, work: Callable[[Tx], Any]) -> Any:
        """A read on a pooled connection that the server had dropped (a restart) is tried
        again on the next one; the pool discards the dead ones as they come back."""
        for _ in range(self._pool.max_size):
            try:
                return super()._read(work)
            except _ConnectionLost:
                continue
        return super()._read(work)

    # --- writes in one round trip -------------------------------------------------------
    def transition_tasks(self, changes: Sequence[TaskChange]) -> list[TaskInstance]:
        if self._one_call and may_go_in_one_call(changes):
            at = self.clock()
            rows = self._call("pipeline_core_move_tasks", writes_json(changes, at), at)
            if rows is not None:
                after = [ti_from_row(row[:11]) for row in rows]
                tries = [(ti.try_number, ti.error) for ti in after]
                self._announce(changes, tries, int(rows[-1][11]), at)
                return after
        return super().transition_tasks(changes)

    def apply(self, writes: Sequence[Write], *, now: datetime | None = None) -> None:
        """A wake-up's writes in one call of ``pipeline_core_apply``: one round trip and one
        transaction, its events and ``NOTIFY`` included."""
        if self._one_call and may_go_in_one_call(writes):
            at = now or self.clock()
            rows = self._call("pipeline_core_apply", writes_json(writes, at), at)
            if rows is not None:
                self._announce(writes, [(r[0], r[1]) for r in rows], int(rows[-1][2]), at)
                return
        super().apply(writes, now=now)

    def _announce(
        self,
        writes: Sequence[Write],
        tries: Sequence[tuple[int | None, str | None]],
        last: int,
        at: datetime,
    ) -> None:
        self._after_commit(last)
        self._publish(events_of(writes, tries, last, at))

    def _call(self, function: str, payload: str, at: datetime) -> list[Any] | None:
        """One autocommit call; ``None`` when the function refused (something not as
        expected, nothing written). A dead pooled connection is tried again with the next
        (had the call run, the next attempt finds things moved and refuses)."""
        sql = f"SELECT * FROM {function}(%s::jsonb, %s, %s)"
        for attempt in range(self._pool.max_size + 1):
            try:
                with self._pool.connection() as connection:
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
                if attempt == self._pool.max_size:
                    raise StoreUnavailable(f"database error on {self.url}: {_cause(exc)}") from None
            except psycopg_pool.PoolTimeout as exc:
                raise StoreUnavailable(f"database error on {self.url}: {_cause(exc)}") from None
        raise AssertionError("unreachable")

    def _after_events(self, tx: Tx, last_seq: int) -> None:
        tx.rows("SELECT pg_notify(?, ?)", (self.channel, str(last_seq)))

    def _migrate(self, target: int) -> None:
        with self._transaction(write=True) as tx:
            tx.rows("SELECT pg_advisory_xact_lock(hashtext('pipeline_core_migrate'))")
            migrate(tx, self.url, target, TYPES)

    def schema_version(self) -> int:
        return int(self._read(lambda tx: tx.scalar("SELECT MAX(version) FROM schema_version")))

    def wait_for_events(self, after_seq: int, timeout: float) -> bool:
        """Block on LISTEN/NOTIFY (one listening connection per store) until ``seq`` passes."""
        with self._listener_lock:
            if self._closed:
                raise StoreUnavailable(f"store {self.url} is closed")
            if self._listener is None:
                self._listener = _Listener(self._conninfo, self.channel)
            listener = self._listener
        current = self._read(lambda tx: tx.scalar("SELECT seq FROM event_counter WHERE id = 1"))
        listener.seen(int(current))
        return listener.wait(after_seq, timeout)

    def claim(self, name: str, on_lost: Callable[[], None] | None = None) -> Claim | None:
        """A session advisory lock on a connection of its own (the server drops it with the
        connection, so with the process)."""

        def connect() -> Any:
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)

        try:
            return AdvisoryClaim.take(connect, name, on_lost or (lambda: None), scope=self.schema)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"cannot claim {name!r} on {self.url}: {_cause(exc)}") from None

    def close(self) -> None:
        self._close_feed(wake=self._stop_listening)
        self._pool.close()

    def _stop_listening(self) -> None:
        with self._listener_lock:
            self._closed = True
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()


class _ConnectionLost(StoreUnavailable):
    """A pooled connection failed under a statement (the server dropped it, or went away)."""


class _Listener(SeqWaiter):
    """A thread holding one LISTEN connection; tracks the highest ``seq`` announced. A lost
    connection is opened again (waiters meanwhile fall back to their timeouts, and every
    ``wait_for_events`` reads the counter first, so nothing announced meanwhile is missed)."""

    def __init__(self, conninfo: str, channel: str) -> None:
        super().__init__(0)
        self._conninfo = conninfo
        self._channel = channel
        self._stopping = False
        self._connection: Any = self._listen()
        self._thread = threading.Thread(target=self._loop, name="pg-event-listener", daemon=True)
        self._thread.start()

    def _listen(self) -> Any:
        connection = psycopg.Connection.connect(self._conninfo, autocommit=True)
        connection.execute(f'LISTEN "{self._channel}"')
        return connection

    def _loop(self) -> None:
        while not self._stopping:
            try:
                for notify in self._connection.notifies(timeout=0.5):
                    self.seen(int(notify.payload))
            except psycopg.Error:
                if self._stopping:
                    break
                self._reconnect()
        with contextlib.suppress(Exception):
            self._connection.close()

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        delay = 0.1
        while not self._stopping:
            try:
                self._connection = self._listen()
                return
            except psycopg.Error:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def stop(self) -> None:
        """Wake every wait at once; the thread closes its connection within its next poll
        (half a second), on its own."""
        self._stopping = True
        self.close()


def _split_schema(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(f"invalid schema name {schema!r} in the database URL")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=rest)), schema


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
