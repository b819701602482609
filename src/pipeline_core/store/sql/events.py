"""The event log in SQL: appending by hand, reading, bounds and retention."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline_core._gc import gc_paused
from pipeline_core.events import Event
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.sql.core import COUNTER, Sql
from pipeline_core.store.sql.rows import EVENT_COLUMNS, decode_json, equal_filters
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import EventQuery


class EventsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

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
        events = self.sql.write(
            lambda tx, p: self.sql.append(
                tx, p, [(type, payload, dag_id, run_id, task_id)], self.sql.clock()
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
        rows = self.sql.read(lambda tx: tx.rows(sql, [*params, query.limit]))
        with gc_paused():
            return [
                Event(int(r[0]), r[1], parse_ts(r[2]), r[3], r[4], r[5], decode_json(r[6]))
                for r in rows
            ]

    def event_bounds(self) -> tuple[int, int]:
        def work(tx: Tx) -> tuple[int, int]:
            first = tx.scalar("SELECT MIN(seq) FROM events")
            last = tx.scalar(COUNTER)
            return (int(first) if first is not None else int(last or 0) + 1, int(last or 0))

        result: tuple[int, int] = self.sql.read(work)
        return result if result[1] else (0, 0)

    def trim_events(self, before_seq: int) -> int:
        count: int = self.sql.write(
            lambda tx, _: tx.run("DELETE FROM events WHERE seq < ?", (before_seq,))
        )
        return count
