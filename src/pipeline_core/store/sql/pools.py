"""Pools in SQL, and how many tries use each."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.state import TaskState
from pipeline_core.store.sql.common import pool_event
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.tx import Tx
from pipeline_core.store.types import Pool


class PoolsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def create_pool(self, pool: Pool) -> Pool:
        def work(tx: Tx, pending: Pending) -> Pool:
            now = self.sql.clock()
            if tx.one("SELECT name FROM pools WHERE name = ?", (pool.name,)):
                raise Conflict(f"pool '{pool.name}' already exists")
            tx.run(
                "INSERT INTO pools (name, slots, description) VALUES (?, ?, ?)",
                (pool.name, pool.slots, pool.description),
            )
            self.sql.append(tx, pending, [pool_event(pool, "created", now)], now)
            return pool

        result: Pool = self.sql.write(work)
        return result

    def get_pool(self, name: str) -> Pool:
        row = self.sql.read(
            lambda tx: tx.one("SELECT name, slots, description FROM pools WHERE name = ?", (name,))
        )
        if row is None:
            raise NotFound(f"no pool '{name}'")
        return Pool(*row)

    def list_pools(self) -> list[Pool]:
        rows = self.sql.read(
            lambda tx: tx.rows("SELECT name, slots, description FROM pools ORDER BY name")
        )
        return [Pool(*row) for row in rows]

    def update_pool(
        self, name: str, *, slots: int | None = None, description: str | None = None
    ) -> Pool:
        def work(tx: Tx, pending: Pending) -> Pool:
            now = self.sql.clock()
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
            self.sql.append(tx, pending, [pool_event(updated, "updated", now)], now)
            return updated

        result: Pool = self.sql.write(work)
        return result

    def delete_pool(self, name: str) -> None:
        if name == "default_pool":
            raise Conflict("default_pool cannot be deleted")

        def work(tx: Tx, pending: Pending) -> None:
            now = self.sql.clock()
            row = tx.one("SELECT name, slots, description FROM pools WHERE name = ?", (name,))
            if row is None:
                raise NotFound(f"no pool '{name}'")
            tx.run("DELETE FROM pools WHERE name = ?", (name,))
            self.sql.append(tx, pending, [pool_event(Pool(*row), "deleted", now)], now)

        self.sql.write(work)

    def pool_usage(self) -> Mapping[str, Mapping[TaskState, int]]:
        rows = self.sql.read(
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
