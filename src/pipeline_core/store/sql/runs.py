"""Runs in SQL: creation (with idempotency keys), compare-and-set moves with their events,
a wake-up's writes in one transaction, queries and statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline_core.model import (
    CreateRun,
    DagRun,
    ExpandTask,
    IdempotencyKey,
    MissDeadline,
    MoveRun,
    NoteWait,
    RunType,
    SwitchVersion,
    TaskChange,
    TaskSpec,
    UpdateAssets,
    Write,
    iso,
)
from pipeline_core.state import RunState
from pipeline_core.store.sql.assets import record_task_updates
from pipeline_core.store.sql.common import run_not_found, to_json
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.idempotency import find_key
from pipeline_core.store.sql.moves import (
    expand_task,
    insert_run,
    miss_deadline,
    move_run,
    move_tasks,
    note_wait,
    run_in,
    switch_version,
)
from pipeline_core.store.sql.rows import (
    RUN_COLUMNS,
    RUN_ORDER_COLUMNS,
    equal_filters,
    paged,
    run_fields,
    run_from_row,
)
from pipeline_core.store.sql.stats import run_stats
from pipeline_core.store.sql.tx import Tx
from pipeline_core.store.types import IdempotencyRecord, Page, RunQuery, RunStats


class RunsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def apply(self, writes: Sequence[Write], *, now: datetime | None = None) -> None:
        """Apply run creations, run and task moves, missed deadlines and expansions, in order,
        in one transaction, each with its events; ``now`` stamps them all (default: the
        store's clock). The first write that fails (``Conflict``, ``NotFound``,
        ``InvalidTransition``, ``InvalidRequest``) undoes them all."""

        def work(tx: Tx, pending: Pending) -> None:
            at = now or self.sql.clock()
            tasks: list[TaskChange] = []
            for write in writes:
                if isinstance(write, TaskChange):
                    tasks.append(write)
                    continue
                move_tasks(self.sql, tx, pending, tasks, at)
                tasks = []
                if isinstance(write, CreateRun):
                    insert_run(
                        self.sql, tx, pending, write.run, write.tasks, at, write.idempotency,
                        write.consumes,
                    )  # fmt: skip
                elif isinstance(write, MissDeadline):
                    miss_deadline(self.sql, tx, pending, write, at)
                elif isinstance(write, ExpandTask):
                    expand_task(self.sql, tx, pending, write, at)
                elif isinstance(write, UpdateAssets):
                    record_task_updates(self.sql, tx, pending, write, at)
                elif isinstance(write, SwitchVersion):
                    switch_version(self.sql, tx, pending, write, at)
                elif isinstance(write, NoteWait):
                    note_wait(self.sql, tx, pending, write, at)
                else:
                    move_run(self.sql, tx, pending, write, at)
            move_tasks(self.sql, tx, pending, tasks, at)

        if writes:
            self.sql.write(work)

    def create_run(
        self,
        run: DagRun,
        tasks: Sequence[TaskSpec],
        *,
        idempotency: IdempotencyKey | None = None,
        consumes: tuple[int, ...] = (),
    ) -> DagRun:
        to_json(dict(run.conf), "conf")
        result: DagRun = self.sql.write(
            lambda tx, pending: insert_run(
                self.sql, tx, pending, run, tasks, self.sql.clock(), idempotency, consumes
            )
        )
        return result

    def set_run_note(self, dag_id: str, run_id: str, note: str | None) -> DagRun:
        def work(tx: Tx, pending: Pending) -> DagRun:
            current = run_in(tx, dag_id, run_id)
            if current.note == note:
                return current
            tx.run(
                "UPDATE dag_runs SET note = ? WHERE dag_id = ? AND run_id = ?",
                (note, dag_id, run_id),
            )
            payload = {"note": note, "previous_note": current.note}
            self.sql.append(
                tx, pending, [("run.updated", payload, dag_id, run_id, None)], self.sql.clock()
            )
            return DagRun(**{**run_fields(current), "note": note})

        result: DagRun = self.sql.write(work)
        return result

    def get_run(self, dag_id: str, run_id: str) -> DagRun:
        row = self.sql.read(
            lambda tx: tx.one(
                f"SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            )
        )
        if row is None:
            raise run_not_found(dag_id, run_id)
        return run_from_row(row)

    def transition_run(
        self,
        dag_id: str,
        run_id: str,
        expected: RunState,
        new: RunState,
        *,
        reason: str | None = None,
    ) -> DagRun:
        move = MoveRun(dag_id, run_id, expected, new, reason)
        result: DagRun = self.sql.write(
            lambda tx, pending: move_run(self.sql, tx, pending, move, self.sql.clock())
        )
        return result

    def delete_run(self, dag_id: str, run_id: str) -> None:
        def work(tx: Tx, pending: Pending) -> None:
            if not delete_runs(tx, "dag_id = ? AND run_id = ?", (dag_id, run_id)):
                raise run_not_found(dag_id, run_id)

        self.sql.write(work)

    def query_runs(self, query: RunQuery) -> Page[DagRun]:
        where, params = run_filters(query)
        descending = query.order_by.startswith("-")
        column = RUN_ORDER_COLUMNS[query.order_by.lstrip("-")]
        direction = "DESC" if descending else "ASC"
        order = f"{column} {direction} NULLS LAST, id {direction}"

        source, window = f"{RUN_COLUMNS} FROM dag_runs", (query.limit, query.offset)
        result: Page[DagRun] = self.sql.read(
            lambda tx: paged(tx, source, where, params, order, window, run_from_row)
        )
        return result

    def run_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> RunStats:
        result: RunStats = self.sql.read(lambda tx: run_stats(tx, dag_id, since, until))
        return result

    def latest_runs(self, dag_ids: Sequence[str]) -> dict[str, DagRun]:
        if not dag_ids:
            return {}
        marks = ", ".join("?" for _ in dag_ids)
        # Each DAG's newest run by one index look-up, joined by key (PostgreSQL ran the look-up
        # twice a DAG when it was a list for ``id IN``).
        columns = ", ".join(f"r.{column}" for column in RUN_COLUMNS.split(", "))
        sql = (
            f"SELECT {columns} FROM dags d JOIN dag_runs r ON r.id = (SELECT x.id FROM dag_runs x "
            "WHERE x.dag_id = d.dag_id ORDER BY x.logical_date DESC, x.id DESC LIMIT 1) "
            f"WHERE d.dag_id IN ({marks})"
        )
        rows = self.sql.read(lambda tx: tx.rows(sql, list(dag_ids)))
        return {run.dag_id: run for run in map(run_from_row, rows)}

    def count_active_runs(self, dag_id: str) -> int:
        sql = "SELECT COUNT(*) FROM dag_runs WHERE dag_id = ? AND state = ?"
        return int(self.sql.read(lambda tx: tx.scalar(sql, (dag_id, RunState.RUNNING.value))))

    def find_idempotency_key(self, dag_id: str, key: str) -> IdempotencyRecord | None:
        now = self.sql.clock()
        found: IdempotencyRecord | None = self.sql.read(lambda tx: find_key(tx, dag_id, key, now))
        return found


#: The tables holding a run's own rows by ``(dag_id, run_id)``, beside its task instances
#: (the log of events, and the notifications that came of them, are history of their own).
RUN_ROWS = ("xcom", "task_logs", "log_sizes", "try_claims", "idempotency_keys", "run_deadlines")


def delete_runs(tx: Tx, where: str, params: Sequence[Any]) -> int:
    runs = tx.rows(f"SELECT id, dag_id, run_id FROM dag_runs WHERE {where}", params)
    for run_pk, dag_id, run_id in runs:
        for table in RUN_ROWS:
            tx.run(f"DELETE FROM {table} WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
        tx.run("DELETE FROM task_instances WHERE run_pk = ?", (run_pk,))
        tx.run("DELETE FROM dag_runs WHERE id = ?", (run_pk,))
    return len(runs)


def run_filters(query: RunQuery) -> tuple[list[str], list[Any]]:
    where, params = equal_filters(query, ("dag_id",))
    if query.states:
        where.append(f"state IN ({', '.join('?' for _ in query.states)})")
        params.extend(s.value for s in query.states)
    if query.run_types:
        where.append(f"run_type IN ({', '.join('?' for _ in query.run_types)})")
        params.extend(RunType(t).value for t in query.run_types)
    for column in ("logical_date", "start_date", "end_date"):
        for suffix, op in (("gte", ">="), ("lte", "<=")):
            value = getattr(query, f"{column}_{suffix}")
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(iso(value))
    return where, params
