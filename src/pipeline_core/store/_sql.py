"""The SQL behind both relational backends. SQLite and PostgreSQL differ only in how they
connect, their DDL, placeholders and error classes; ``SqlStore`` holds everything else.

Statements are written with ``?`` placeholders; a backend rewrites them once if it needs to.
Timestamps are stored as fixed-width ISO 8601 text (``iso``), so text order is time order.
"""

from __future__ import annotations

import json
import threading
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline_core._gc import gc_paused
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.store._common import (
    dag_event,
    pool_event,
    to_json,
)
from pipeline_core.store._tx import Tx, parse_ts
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES
from pipeline_core.store.types import (
    DagRecord,
    Event,
    EventQuery,
    Heartbeat,
    ImportError_,
    Page,
    Pool,
    iso,
    utcnow,
)

Listener = Callable[[list[Event]], None]
DAG_COLUMNS = (
    "dag_id, is_paused, is_active, fileloc, schedule, timezone, description, tags, "
    "definition_hash, definition, task_count, last_parsed_at"
)
#: A listing leaves out the (possibly large) serialised definition.
DAG_LIST_COLUMNS = DAG_COLUMNS.replace("definition,", "NULL,")
RUN_COLUMNS = (
    "dag_id, run_id, state, run_type, logical_date, conf, note, queued_at, start_date, end_date"
)
TI_COLUMNS = (
    "dag_id, run_id, task_id, state, try_number, max_tries, pool, priority_weight, "
    "start_date, end_date, error"
)
EVENT_COLUMNS = "seq, type, timestamp, dag_id, run_id, task_id, payload"
RUN_ORDER_COLUMNS = {
    "logical_date": "logical_date",
    "start_date": "start_date",
    "end_date": "end_date",
    "duration": "duration_ms",
    "state": "state",
}


@dataclass
class _Pending:
    """Events appended inside the current transaction, published after it commits."""

    events: list[Event]


class SqlStore:
    """Everything of the ``Store`` protocol that is plain SQL."""

    url: str
    supports_notify = False
    integrity_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, *, log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES) -> None:
        self.log_cap_bytes = log_cap_bytes
        #: What "now" is for timestamps; tests inject a fake clock here.
        self.clock: Callable[[], datetime] = utcnow
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()

    # --- backend hooks ---------------------------------------------------------------
    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]: ...

    def _after_events(self, tx: Tx, last_seq: int) -> None:
        """Called inside the transaction that appended events up to ``last_seq``."""

    # --- plumbing --------------------------------------------------------------------
    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(events)`` after every commit that appended events."""
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _write(self, work: Callable[[Tx, _Pending], Any]) -> Any:
        pending = _Pending([])
        try:
            with self._transaction(write=True) as tx:
                result = work(tx, pending)
        except self.integrity_errors as exc:
            raise Conflict(f"already exists: {_first_line(exc)}") from None
        if pending.events:
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
        pending: _Pending,
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

    # --- DAGs -----------------------------------------------------------------------
    def upsert_dag(self, record: DagRecord) -> DagRecord:
        tags = to_json(list(record.tags), "tags")
        definition = None if record.definition is None else to_json(record.definition, "definition")

        def work(tx: Tx, pending: _Pending) -> DagRecord:
            row = tx.one(f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?", (record.dag_id,))
            existing = _dag(row) if row else None
            paused = existing.is_paused if existing else record.is_paused
            stored = DagRecord(**{**_dag_fields(record), "is_paused": paused})
            if existing is not None and _same_dag(existing, stored):
                return existing
            tx.run(
                f"INSERT INTO dags ({DAG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dag_id) DO UPDATE SET is_active = excluded.is_active, "
                "fileloc = excluded.fileloc, schedule = excluded.schedule, "
                "timezone = excluded.timezone, description = excluded.description, "
                "tags = excluded.tags, definition_hash = excluded.definition_hash, "
                "definition = excluded.definition, task_count = excluded.task_count, "
                "last_parsed_at = excluded.last_parsed_at",
                (
                    stored.dag_id, stored.is_paused, stored.is_active, stored.fileloc,
                    stored.schedule, stored.timezone, stored.description, tags,
                    stored.definition_hash, definition, stored.task_count,
                    iso(stored.last_parsed_at),
                ),
            )  # fmt: skip
            self._append(
                tx,
                pending,
                [dag_event(stored, "created" if existing is None else "updated")],
                self.clock(),
            )
            return stored

        result: DagRecord = self._write(work)
        return result

    def get_dag(self, dag_id: str) -> DagRecord:
        row = self._read(
            lambda tx: tx.one(f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?", (dag_id,))
        )
        if row is None:
            raise NotFound(f"no DAG '{dag_id}'")
        return _dag(row)

    def list_dags(
        self,
        *,
        tags: Sequence[str] = (),
        is_paused: bool | None = None,
        is_active: bool | None = None,
        dag_id_pattern: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[DagRecord]:
        where: list[str] = []
        params: list[Any] = []
        if is_paused is not None:
            where.append("is_paused = ?")
            params.append(is_paused)
        if is_active is not None:
            where.append("is_active = ?")
            params.append(is_active)
        if dag_id_pattern:
            where.append("LOWER(dag_id) LIKE ? ESCAPE '\\'")
            params.append(f"%{_like_escape(dag_id_pattern.lower())}%")
        if tags:
            where.append("(" + " OR ".join("tags LIKE ? ESCAPE '\\'" for _ in tags) + ")")
            params.extend(f"%{_like_escape(json.dumps(t))}%" for t in tags)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        def work(tx: Tx) -> Page[DagRecord]:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM dags{clause}", params))
            rows = tx.rows(
                f"SELECT {DAG_LIST_COLUMNS} FROM dags{clause} ORDER BY dag_id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            return Page([_dag(r) for r in rows], total, limit, offset)

        result: Page[DagRecord] = self._read(work)
        return result

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        def work(tx: Tx, pending: _Pending) -> DagRecord:
            row = tx.one(f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?", (dag_id,))
            if row is None:
                raise NotFound(f"no DAG '{dag_id}'")
            record = _dag(row)
            if record.is_paused == paused:
                return record
            tx.run("UPDATE dags SET is_paused = ? WHERE dag_id = ?", (paused, dag_id))
            updated = DagRecord(**{**_dag_fields(record), "is_paused": paused})
            self._append(
                tx, pending, [dag_event(updated, "paused" if paused else "unpaused")], self.clock()
            )
            return updated

        result: DagRecord = self._write(work)
        return result

    def deactivate_missing_dags(self, active_dag_ids: Sequence[str]) -> list[str]:
        keep = set(active_dag_ids)

        def work(tx: Tx, pending: _Pending) -> list[str]:
            rows = tx.rows(f"SELECT {DAG_COLUMNS} FROM dags WHERE is_active = ?", (True,))
            gone = [_dag(r) for r in rows if r[0] not in keep]
            for record in gone:
                tx.run("UPDATE dags SET is_active = ? WHERE dag_id = ?", (False, record.dag_id))
            inactive = [DagRecord(**{**_dag_fields(r), "is_active": False}) for r in gone]
            self._append(tx, pending, [dag_event(r, "deactivated") for r in inactive], self.clock())
            return [r.dag_id for r in gone]

        result: list[str] = self._write(work)
        return result

    def replace_import_errors(self, errors: Sequence[ImportError_]) -> None:
        rows = [(e.filename, to_json(list(e.issues), "issues"), iso(e.seen_at)) for e in errors]

        def work(tx: Tx, _: _Pending) -> None:
            tx.run("DELETE FROM import_errors")
            tx.many("INSERT INTO import_errors (filename, issues, seen_at) VALUES (?, ?, ?)", rows)

        self._write(work)

    def list_import_errors(self) -> list[ImportError_]:
        sql = "SELECT filename, issues, seen_at FROM import_errors ORDER BY filename"
        rows = self._read(lambda tx: tx.rows(sql))
        return [ImportError_(r[0], tuple(json.loads(r[1])), parse_ts(r[2])) for r in rows]

    # --- pools ----------------------------------------------------------------------
    def create_pool(self, pool: Pool) -> Pool:
        def work(tx: Tx, pending: _Pending) -> Pool:
            if tx.one("SELECT name FROM pools WHERE name = ?", (pool.name,)):
                raise Conflict(f"pool '{pool.name}' already exists")
            tx.run(
                "INSERT INTO pools (name, slots, description) VALUES (?, ?, ?)",
                (pool.name, pool.slots, pool.description),
            )
            self._append(tx, pending, [pool_event(pool, "created")], self.clock())
            return pool

        result: Pool = self._write(work)
        return result

    def get_pool(self, name: str) -> Pool:
        row = self._read(
            lambda tx: tx.one("SELECT name, slots, description FROM pools WHERE name = ?", (name,))
        )
        if row is None:
            raise NotFound(f"no pool '{name}'")
        return Pool(*row)

    def list_pools(self) -> list[Pool]:
        rows = self._read(
            lambda tx: tx.rows("SELECT name, slots, description FROM pools ORDER BY name")
        )
        return [Pool(*row) for row in rows]

    def update_pool(
        self, name: str, *, slots: int | None = None, description: str | None = None
    ) -> Pool:
        def work(tx: Tx, pending: _Pending) -> Pool:
            row = tx.one("SELECT name, slots, description FROM pools WHERE name = ?", (name,))
            if row is None:
                raise NotFound(f"no pool '{name}'")
            current = Pool(*row)
            updated = Pool(
                name,
                current.slots if slots is None else slots,
                current.description if description is None else description,
            )
            if updated == current:
                return current
            tx.run(
                "UPDATE pools SET slots = ?, description = ? WHERE name = ?",
                (updated.slots, updated.description, name),
            )
            self._append(tx, pending, [pool_event(updated, "updated")], self.clock())
            return updated

        result: Pool = self._write(work)
        return result

    def delete_pool(self, name: str) -> None:
        if name == "default_pool":
            raise Conflict("default_pool cannot be deleted")

        def work(tx: Tx, pending: _Pending) -> None:
            row = tx.one("SELECT name, slots, description FROM pools WHERE name = ?", (name,))
            if row is None:
                raise NotFound(f"no pool '{name}'")
            tx.run("DELETE FROM pools WHERE name = ?", (name,))
            self._append(tx, pending, [pool_event(Pool(*row), "deleted")], self.clock())

        self._write(work)

    # --- heartbeats -----------------------------------------------------------------
    def heartbeat(self, component_id: str, *, kind: str, hostname: str, pid: int) -> Heartbeat:
        beat = Heartbeat(component_id, kind, hostname, pid, self.clock())
        self._write(
            lambda tx, _: tx.run(
                "INSERT INTO heartbeats (component_id, kind, hostname, pid, last_heartbeat) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (component_id) DO UPDATE SET "
                "kind = excluded.kind, hostname = excluded.hostname, pid = excluded.pid, "
                "last_heartbeat = excluded.last_heartbeat",
                (component_id, kind, hostname, pid, iso(beat.last_heartbeat)),
            )
        )
        return beat

    def list_heartbeats(self, kind: str | None = None) -> list[Heartbeat]:
        sql = "SELECT component_id, kind, hostname, pid, last_heartbeat FROM heartbeats"
        params: tuple[Any, ...] = ()
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", (kind,)
        rows = self._read(lambda tx: tx.rows(sql + " ORDER BY component_id", params))
        return [Heartbeat(r[0], r[1], r[2], int(r[3]), parse_ts(r[4])) for r in rows]

    def release_heartbeat(self, component_id: str) -> None:
        self._write(
            lambda tx, _: tx.run("DELETE FROM heartbeats WHERE component_id = ?", (component_id,))
        )

    # --- event log ------------------------------------------------------------------
    def append_event(
        self,
        type: str,
        payload: Mapping[str, Any],
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> Event:
        to_json(payload, "event payload")
        events = self._write(
            lambda tx, p: self._append(
                tx, p, [(type, payload, dag_id, run_id, task_id)], self.clock()
            )
        )
        event: Event = events[0]
        return event

    def read_events(self, query: EventQuery) -> list[Event]:
        where, params = equal_filters(query, ("dag_id", "run_id", "task_id"))
        where.insert(0, "seq > ?")
        params.insert(0, query.after_seq)
        if query.types:
            where.append(f"type IN ({', '.join('?' for _ in query.types)})")
            params.extend(query.types)
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        rows = self._read(lambda tx: tx.rows(sql, [*params, query.limit]))
        with gc_paused():
            return [
                Event(int(r[0]), r[1], parse_ts(r[2]), r[3], r[4], r[5], _decode(r[6]))
                for r in rows
            ]

    def event_bounds(self) -> tuple[int, int]:
        def work(tx: Tx) -> tuple[int, int]:
            first = tx.scalar("SELECT MIN(seq) FROM events")
            last = tx.scalar("SELECT seq FROM event_counter WHERE id = 1")
            return (int(first) if first is not None else int(last or 0) + 1, int(last or 0))

        result: tuple[int, int] = self._read(work)
        return result if result[1] else (0, 0)

    def trim_events(self, before_seq: int) -> int:
        count: int = self._write(
            lambda tx, _: tx.run("DELETE FROM events WHERE seq < ?", (before_seq,))
        )
        return count


# --- row mapping -----------------------------------------------------------------------


def equal_filters(query: Any, columns: Sequence[str]) -> tuple[list[str], list[Any]]:
    """``column = ?`` conditions for every listed attribute of ``query`` that is set."""
    where: list[str] = []
    params: list[Any] = []
    for column in columns:
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


#: The C scanner behind ``json.loads``, minus the whitespace handling that compact JSON
#: written by ``to_json`` never needs: event reads decode thousands of payloads per call.
_SCAN_ONCE = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _decode(text: str) -> Any:
    return _SCAN_ONCE(text, 0)[0]


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _dag_fields(record: DagRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in DagRecord.__slots__}


def _same_dag(a: DagRecord, b: DagRecord) -> bool:
    ignore = {"last_parsed_at"}
    return all(getattr(a, f) == getattr(b, f) for f in DagRecord.__slots__ if f not in ignore)


def _dag(row: tuple[Any, ...]) -> DagRecord:
    return DagRecord(
        dag_id=row[0],
        is_paused=bool(row[1]),
        is_active=bool(row[2]),
        fileloc=row[3],
        schedule=row[4],
        timezone=row[5],
        description=row[6],
        tags=tuple(_decode(row[7])),
        definition_hash=row[8],
        definition=json.loads(row[9]) if row[9] is not None else None,
        task_count=int(row[10]),
        last_parsed_at=parse_ts(row[11]),
    )
