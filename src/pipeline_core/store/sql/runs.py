"""Runs and task instances in SQL: creation, compare-and-set moves with their events,
queries and statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline_core.errors import Conflict
from pipeline_core.model import (
    CreateRun,
    DagRun,
    IdempotencyKey,
    MoveRun,
    RunType,
    TaskChange,
    TaskInstance,
    TaskKey,
    TaskSpec,
    Write,
    apply_run_change,
    apply_task_change,
    iso,
    run_event_payload,
    task_event_payload,
)
from pipeline_core.state import FINISHED_RUN_STATES, RunState, TaskState
from pipeline_core.store.sql.base import Pending, SqlBase
from pipeline_core.store.sql.common import run_not_found, task_not_found, to_json
from pipeline_core.store.sql.idempotency import hold_key
from pipeline_core.store.sql.rows import (
    KEY_WHERE,
    RUN_COLUMNS,
    RUN_ORDER_COLUMNS,
    TI_COLUMNS,
    equal_filters,
    key_params,
    run_fields,
    run_from_row,
    ti_from_row,
)
from pipeline_core.store.sql.stats import run_stats, task_stats
from pipeline_core.store.sql.tx import Tx
from pipeline_core.store.types import (
    Page,
    RunQuery,
    RunStats,
    TaskInstanceQuery,
    TaskStats,
)


class RunsSql(SqlBase):
    def apply(self, writes: Sequence[Write], *, now: datetime | None = None) -> None:
        """Apply run creations, run moves and task moves, in order, in one transaction,
        each with its events; ``now`` stamps them all (default: the store's clock). The
        first write that fails (``Conflict``, ``NotFound``, ``InvalidTransition``) undoes
        them all."""

        def work(tx: Tx, pending: Pending) -> None:
            at = now or self.clock()
            tasks: list[TaskChange] = []
            for write in writes:
                if isinstance(write, TaskChange):
                    tasks.append(write)
                    continue
                self._move_tasks(tx, pending, tasks, at)
                tasks = []
                if isinstance(write, CreateRun):
                    self._insert_run(tx, pending, write.run, write.tasks, at, write.idempotency)
                else:
                    self._move_run(tx, pending, write, at)
            self._move_tasks(tx, pending, tasks, at)

        if writes:
            self._write(work)

    def create_run(
        self,
        run: DagRun,
        tasks: Sequence[TaskSpec],
        *,
        idempotency: IdempotencyKey | None = None,
    ) -> DagRun:
        to_json(dict(run.conf), "conf")
        result: DagRun = self._write(
            lambda tx, pending: self._insert_run(tx, pending, run, tasks, self.clock(), idempotency)
        )
        return result

    def set_run_note(self, dag_id: str, run_id: str, note: str | None) -> DagRun:
        def work(tx: Tx, pending: Pending) -> DagRun:
            current = _run_in(tx, dag_id, run_id)
            if current.note == note:
                return current
            tx.run(
                "UPDATE dag_runs SET note = ? WHERE dag_id = ? AND run_id = ?",
                (note, dag_id, run_id),
            )
            payload = {"note": note, "previous_note": current.note}
            self._append(
                tx, pending, [("run.updated", payload, dag_id, run_id, None)], self.clock()
            )
            return DagRun(**{**run_fields(current), "note": note})

        result: DagRun = self._write(work)
        return result

    def get_run(self, dag_id: str, run_id: str) -> DagRun:
        row = self._read(
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
        result: DagRun = self._write(
            lambda tx, pending: self._move_run(tx, pending, move, self.clock())
        )
        return result

    def transition_tasks(self, changes: Sequence[TaskChange]) -> list[TaskInstance]:
        result: list[TaskInstance] = self._write(
            lambda tx, pending: self._move_tasks(tx, pending, changes, self.clock())
        )
        return result

    # --- inside a transaction -------------------------------------------------------------
    def _insert_run(
        self,
        tx: Tx,
        pending: Pending,
        run: DagRun,
        tasks: Sequence[TaskSpec],
        now: datetime,
        idempotency: IdempotencyKey | None = None,
    ) -> DagRun:
        conf = to_json(dict(run.conf), "conf")
        if idempotency is not None:
            hold_key(tx, run, idempotency, now)
        stored = DagRun(**{**run_fields(run), "queued_at": run.queued_at or now})
        kind = RunType(run.run_type).value
        if tx.one(
            "SELECT 1 FROM dag_runs WHERE dag_id = ? AND run_id = ?", (run.dag_id, run.run_id)
        ):
            raise Conflict(f"run '{run.run_id}' of DAG '{run.dag_id}' already exists")
        if kind == RunType.SCHEDULED and tx.one(
            "SELECT 1 FROM dag_runs WHERE dag_id = ? AND logical_date = ? "
            "AND run_type = 'scheduled'",
            (run.dag_id, iso(run.logical_date)),
        ):
            raise Conflict(
                f"DAG '{run.dag_id}' already has a scheduled run for {iso(run.logical_date)}"
            )
        run_pk = tx.scalar(
            f"INSERT INTO dag_runs ({RUN_COLUMNS}, duration_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                stored.dag_id, stored.run_id, stored.state.value, kind,
                iso(stored.logical_date), conf, stored.note, iso(stored.queued_at),
                iso(stored.start_date), iso(stored.end_date), stored.duration_ms,
            ),
        )  # fmt: skip
        tx.many(
            f"INSERT INTO task_instances (run_pk, ordinal, {TI_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL, NULL, NULL)",
            [
                (run_pk, i, run.dag_id, run.run_id, t.task_id, TaskState.QUEUED.value,
                 t.max_tries, t.pool, t.priority_weight)
                for i, t in enumerate(tasks)
            ],
        )  # fmt: skip
        payload = run_event_payload(stored, None, now)
        self._append(
            tx, pending, [("run.state_changed", payload, run.dag_id, run.run_id, None)], now
        )
        return stored

    def _move_run(self, tx: Tx, pending: Pending, move: MoveRun, now: datetime) -> DagRun:
        dag_id, run_id, expected, new = move.dag_id, move.run_id, move.expected, move.new
        current = _run_in(tx, dag_id, run_id)
        updated = apply_run_change(current, expected, new, now, by_hand=move.by_hand)
        changed = tx.run(
            "UPDATE dag_runs SET state = ?, start_date = ?, end_date = ?, duration_ms = ? "
            "WHERE dag_id = ? AND run_id = ? AND state = ?",
            (new.value, iso(updated.start_date), iso(updated.end_date), updated.duration_ms,
             dag_id, run_id, expected.value),
        )  # fmt: skip
        if changed != 1:
            raise Conflict(f"run '{run_id}' changed state concurrently")
        payload = run_event_payload(updated, current.state, now, move.reason)
        self._append(tx, pending, [("run.state_changed", payload, dag_id, run_id, None)], now)
        return updated

    def _move_tasks(
        self, tx: Tx, pending: Pending, changes: Sequence[TaskChange], now: datetime
    ) -> list[TaskInstance]:
        results, items = [], []
        for change in changes:
            row = tx.one(
                f"SELECT {TI_COLUMNS} FROM task_instances WHERE {KEY_WHERE}",
                key_params(change.key),
            )
            if row is None:
                raise task_not_found(change.key)
            before = ti_from_row(row)
            after = apply_task_change(before, change, now)
            changed = tx.run(
                "UPDATE task_instances SET state = ?, try_number = ?, max_tries = ?, "
                "start_date = ?, end_date = ?, duration_ms = ?, error = ? "
                f"WHERE {KEY_WHERE} AND state = ?",
                (after.state.value, after.try_number, after.max_tries, iso(after.start_date),
                 iso(after.end_date), after.duration_ms, after.error, *key_params(change.key),
                 before.state.value),
            )  # fmt: skip
            if changed != 1:
                raise Conflict(f"task '{change.key.task_id}' changed state concurrently")
            payload = task_event_payload(before, after, now, change.reason)
            items.append(("task.state_changed", payload, after.dag_id, after.run_id, after.task_id))
            results.append(after)
        self._append(tx, pending, items, now)
        return results

    def delete_run(self, dag_id: str, run_id: str) -> None:
        def work(tx: Tx, pending: Pending) -> None:
            if not delete_runs(tx, "dag_id = ? AND run_id = ?", (dag_id, run_id)):
                raise run_not_found(dag_id, run_id)

        self._write(work)

    def prune_runs(self, dag_id: str, older_than: datetime) -> int:
        finished = tuple(s.value for s in FINISHED_RUN_STATES)
        where = f"dag_id = ? AND logical_date < ? AND state IN ({', '.join('?' for _ in finished)})"
        count: int = self._write(
            lambda tx, _: delete_runs(tx, where, (dag_id, iso(older_than), *finished))
        )
        return count

    def query_runs(self, query: RunQuery) -> Page[DagRun]:
        where, params = run_filters(query)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        descending = query.order_by.startswith("-")
        column = RUN_ORDER_COLUMNS[query.order_by.lstrip("-")]
        direction = "DESC" if descending else "ASC"
        order = f"{column} {direction} NULLS LAST, id {direction}"

        def work(tx: Tx) -> Page[DagRun]:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM dag_runs{clause}", params))
            rows = tx.rows(
                f"SELECT {RUN_COLUMNS} FROM dag_runs{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            )
            return Page([run_from_row(r) for r in rows], total, query.limit, query.offset)

        result: Page[DagRun] = self._read(work)
        return result

    def run_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> RunStats:
        result: RunStats = self._read(lambda tx: run_stats(tx, dag_id, since, until))
        return result

    def task_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[TaskStats]:
        result: list[TaskStats] = self._read(lambda tx: task_stats(tx, dag_id, since, until))
        return result

    def latest_runs(self, dag_ids: Sequence[str]) -> dict[str, DagRun]:
        if not dag_ids:
            return {}
        marks = ", ".join("?" for _ in dag_ids)
        sql = (
            f"SELECT {RUN_COLUMNS} FROM dag_runs WHERE id IN (SELECT (SELECT x.id FROM dag_runs x "
            "WHERE x.dag_id = d.dag_id ORDER BY x.logical_date DESC, x.id DESC LIMIT 1) "
            f"FROM dags d WHERE d.dag_id IN ({marks}))"
        )
        rows = self._read(lambda tx: tx.rows(sql, list(dag_ids)))
        return {run.dag_id: run for run in map(run_from_row, rows)}

    def count_active_runs(self, dag_id: str) -> int:
        sql = "SELECT COUNT(*) FROM dag_runs WHERE dag_id = ? AND state = ?"
        return int(self._read(lambda tx: tx.scalar(sql, (dag_id, RunState.RUNNING.value))))

    def get_task_instance(self, key: TaskKey) -> TaskInstance:
        row = self._read(
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
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        def work(tx: Tx) -> Page[TaskInstance]:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM task_instances{clause}", params))
            rows = tx.rows(
                f"SELECT {TI_COLUMNS} FROM task_instances{clause} "
                "ORDER BY run_pk DESC, ordinal ASC LIMIT ? OFFSET ?",
                [*params, query.limit, query.offset],
            )
            return Page([ti_from_row(r) for r in rows], total, query.limit, query.offset)

        result: Page[TaskInstance] = self._read(work)
        return result


def _run_in(tx: Tx, dag_id: str, run_id: str) -> DagRun:
    row = tx.one(
        f"SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
    )
    if row is None:
        raise run_not_found(dag_id, run_id)
    return run_from_row(row)


def delete_runs(tx: Tx, where: str, params: Sequence[Any]) -> int:
    runs = tx.rows(f"SELECT id, dag_id, run_id FROM dag_runs WHERE {where}", params)
    for run_pk, dag_id, run_id in runs:
        for table in ("xcom", "task_logs", "log_sizes"):
            tx.run(f"DELETE FROM {table} WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
        tx.run("DELETE FROM task_instances WHERE run_pk = ?", (run_pk,))
        tx.run("DELETE FROM idempotency_keys WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
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
