"""Pools and component heartbeats in SQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import iso
from pipeline_core.state import TaskState
from pipeline_core.store.sql.base import Pending, SqlBase
from pipeline_core.store.sql.common import pool_event
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import Heartbeat, Pool


class PoolsSql(SqlBase):
    def create_pool(self, pool: Pool) -> Pool:
        def work(tx: Tx, pending: Pending) -> Pool:
            now = self.clock()
            if tx.one("SELECT name FROM pools WHERE name = ?", (pool.name,)):
                raise Conflict(f"pool '{pool.name}' already exists")
            tx.run(
                "INSERT INTO pools (name, slots, description) VALUES (?, ?, ?)",
                (pool.name, pool.slots, pool.description),
            )
            self._append(tx, pending, [pool_event(pool, "created", now)], now)
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
        def work(tx: Tx, pending: Pending) -> Pool:
            now = self.clock()
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
            self._append(tx, pending, [pool_event(updated, "updated", now)], now)
            return updated

        result: Pool = self._write(work)
        return result

    def delete_pool(self, name: str) -> None:
        if name == "default_pool":
            raise Conflict("default_pool cannot be deleted")

        def work(tx: Tx, pending: Pending) -> None:
            now = self.clock()
            row = tx.one("SELECT name, slots, description FROM pools WHERE name = ?", (name,))
            if row is None:
                raise NotFound(f"no pool '{name}'")
            tx.run("DELETE FROM pools WHERE name = ?", (name,))
            self._append(tx, pending, [pool_event(Pool(*row), "deleted", now)], now)

        self._write(work)

    def pool_usage(self) -> Mapping[str, Mapping[TaskState, int]]:
        rows = self._read(
            lambda tx: tx.rows(
                "SELECT pool, state, COUNT(*) FROM task_instances WHERE state IN (?, ?) "
                "GROUP BY pool, state",
                (TaskState.RUNNING.value, TaskState.QUEUED.value),
            )
        )
        usage: dict[str, dict[TaskState, int]] = {}
        for pool, state, count in rows:
            usage.setdefault(pool, {})[TaskState(state)] = int(count)
        return usage

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
