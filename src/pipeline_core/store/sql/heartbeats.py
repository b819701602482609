"""Component heartbeats in SQL: every engine, scheduler, standby and worker says it is
alive; health and takeover read them."""

from __future__ import annotations

from typing import Any

from pipeline_core.model import iso
from pipeline_core.store.sql.core import Sql
from pipeline_core.store.sql.tx import parse_ts
from pipeline_core.store.types import Heartbeat


class HeartbeatsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def heartbeat(self, component_id: str, *, kind: str, hostname: str, pid: int) -> Heartbeat:
        beat = Heartbeat(component_id, kind, hostname, pid, self.sql.clock())
        self.sql.write(
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
        rows = self.sql.read(lambda tx: tx.rows(sql + " ORDER BY component_id", params))
        return [Heartbeat(r[0], r[1], r[2], int(r[3]), parse_ts(r[4])) for r in rows]

    def release_heartbeat(self, component_id: str) -> None:
        self.sql.write(
            lambda tx, _: tx.run("DELETE FROM heartbeats WHERE component_id = ?", (component_id,))
        )
