"""Pools in SQL, and how many tries use each."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline_core.dag.flow import parse_rate
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.state import TaskState
from pipeline_core.store.sql.common import pool_event
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.tx import Tx
from pipeline_core.store.types import Pool

POOL_COLUMNS = "name, slots, description, rate, burst"


def _checked(pool: Pool) -> Pool:
    """``InvalidRequest`` naming what is wrong with a pool's rate limit."""
    if pool.rate is not None:
        try:
            parse_rate(pool.rate)
        except ValueError as exc:
            raise InvalidRequest(f"pool '{pool.name}': {exc}") from None
    if isinstance(pool.burst, bool) or not isinstance(pool.burst, int) or pool.burst < 1:
        raise InvalidRequest(f"pool '{pool.name}': burst must be a whole number ≥ 1")
    return pool


class PoolsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def create_pool(self, pool: Pool) -> Pool:
        _checked(pool)

        def work(tx: Tx, pending: Pending) -> Pool:
            now = self.sql.clock()
            if tx.one("SELECT name FROM pools WHERE name = ?", (pool.name,)):
                raise Conflict(f"pool '{pool.name}' already exists")
            tx.run(
                f"INSERT INTO pools ({POOL_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                (pool.name, pool.slots, pool.description, pool.rate, pool.burst),
            )
            self.sql.append(tx, pending, [pool_event(pool, "created", now)], now)
            return pool

        result: Pool = self.sql.write(work)
        return result

    def get_pool(self, name: str) -> Pool:
        row = self.sql.read(
            lambda tx: tx.one(f"SELECT {POOL_COLUMNS} FROM pools WHERE name = ?", (name,))
        )
        if row is None:
            raise NotFound(f"no pool '{name}'")
        return Pool(*row)

    def list_pools(self) -> list[Pool]:
        rows = self.sql.read(lambda tx: tx.rows(f"SELECT {POOL_COLUMNS} FROM pools ORDER BY name"))
        return [Pool(*row) for row in rows]

    def update_pool(
        self,
        name: str,
        *,
        slots: int | None = None,
        description: str | None = None,
        rate: str | None = None,
        burst: int | None = None,
    ) -> Pool:
        def work(tx: Tx, pending: Pending) -> Pool:
            now = self.sql.clock()
            row = tx.one(f"SELECT {POOL_COLUMNS} FROM pools WHERE name = ?", (name,))
            if row is None:
                raise NotFound(f"no pool '{name}'")
            current = Pool(*row)
            updated = _checked(
                Pool(
                    name,
                    current.slots if slots is None else slots,
                    current.description if description is None else description,
                    current.rate if rate is None else rate or None,
                    current.burst if burst is None else burst,
                )
            )
            if updated == current:
                return current
            tx.run(
                "UPDATE pools SET slots = ?, description = ?, rate = ?, burst = ? WHERE name = ?",
                (updated.slots, updated.description, updated.rate, updated.burst, name),
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
            row = tx.one(f"SELECT {POOL_COLUMNS} FROM pools WHERE name = ?", (name,))
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
