"""Task instances in SQL: their compare-and-set moves, reads and statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pipeline_core.model import TaskChange, TaskInstance, TaskKey
from pipeline_core.store.sql.common import task_not_found
from pipeline_core.store.sql.core import Sql
from pipeline_core.store.sql.moves import move_tasks
from pipeline_core.store.sql.rows import (
    KEY_WHERE,
    RUN_COLUMNS,
    TI_COLUMNS,
    equal_filters,
    key_params,
    paged,
    run_from_row,
    ti_from_row,
)
from pipeline_core.store.sql.stats import task_stats
from pipeline_core.store.sql.tx import Tx
from pipeline_core.store.types import GridRun, Page, TaskInstanceQuery, TaskStats


class TasksSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def transition_tasks(self, changes: Sequence[TaskChange]) -> list[TaskInstance]:
        result: list[TaskInstance] = self.sql.write(
            lambda tx, pending: move_tasks(self.sql, tx, pending, changes, self.sql.clock())
        )
        return result

    def get_task_instance(self, key: TaskKey) -> TaskInstance:
        row = self.sql.read(
            lambda tx: tx.one(
                f"SELECT {TI_COLUMNS} FROM task_instances WHERE {KEY_WHERE}", key_params(key)
            )
        )
        if row is None:
            raise task_not_found(key)
        return ti_from_row(row)

    def query_task_instances(self, query: TaskInstanceQuery) -> Page[TaskInstance]:
        where, params = equal_filters(query, ("dag_id", "run_id", "task_id"))
        if query.states:
            where.append(f"state IN ({', '.join('?' for _ in query.states)})")
            params.extend(s.value for s in query.states)
        if query.mapped is not None:
            where.append("map_index >= 0" if query.mapped else "map_index = -1")
        source, window = f"{TI_COLUMNS} FROM task_instances", (query.limit, query.offset)
        # One task of one run (a mapped task's instances): the key's own order, no sort.
        one_task = query.run_id is not None and query.task_id is not None
        order = "map_index ASC" if one_task else "run_pk DESC, ordinal ASC, map_index ASC"
        result: Page[TaskInstance] = self.sql.read(
            lambda tx: paged(tx, source, where, params, order, window, ti_from_row)
        )
        return result

    def mapped_counts(self, dag_id: str, run_id: str) -> dict[str, dict[str, int]]:
        rows = self.sql.read(
            lambda tx: tx.rows(
                "SELECT task_id, state, COUNT(*) FROM task_instances WHERE dag_id = ? "
                "AND run_id = ? AND map_index >= 0 GROUP BY task_id, state ORDER BY task_id, state",
                (dag_id, run_id),
            )
        )
        counts: dict[str, dict[str, int]] = {}
        for task_id, state, count in rows:
            counts.setdefault(task_id, {})[state] = int(count)
        return counts

    def task_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[TaskStats]:
        result: list[TaskStats] = self.sql.read(lambda tx: task_stats(tx, dag_id, since, until))
        return result

    def grid(self, dag_id: str, limit: int) -> list[GridRun]:
        result: list[GridRun] = self.sql.read(lambda tx: grid(tx, dag_id, limit))
        return result


def grid(tx: Tx, dag_id: str, limit: int) -> list[GridRun]:
    """The newest runs by logical date, their task instances and their mapped counts."""
    runs = [run_from_row(r) for r in tx.rows(
        f"SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = ? "
        "ORDER BY logical_date DESC, id DESC LIMIT ?", (dag_id, limit))]  # fmt: skip
    if not runs:
        return []
    newest = ("SELECT id FROM dag_runs WHERE dag_id = ? ORDER BY logical_date DESC, id DESC "
              "LIMIT ?")  # fmt: skip
    tis: dict[str, list[TaskInstance]] = {}
    for row in tx.rows(
        f"SELECT {TI_COLUMNS} FROM task_instances WHERE run_pk IN ({newest}) "
        "AND map_index = -1 ORDER BY run_pk, ordinal", (dag_id, limit)
    ):  # fmt: skip
        ti = ti_from_row(row)
        tis.setdefault(ti.run_id, []).append(ti)
    mapped: dict[str, dict[str, dict[str, int]]] = {}
    for run_id, task_id, state, count in tx.rows(
        f"SELECT run_id, task_id, state, COUNT(*) FROM task_instances WHERE run_pk IN ({newest}) "
        "AND map_index >= 0 GROUP BY run_id, task_id, state", (dag_id, limit)
    ):  # fmt: skip
        mapped.setdefault(run_id, {}).setdefault(task_id, {})[state] = int(count)
    return [GridRun(r, tuple(tis.get(r.run_id, ())), mapped.get(r.run_id, {})) for r in runs]
