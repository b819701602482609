"""The moves of runs and task instances inside a transaction, each with its events: what
every write of runs and tasks (one at a time, or a wake-up's ``apply``) is made of."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pipeline_core.errors import Conflict, InvalidRequest
from pipeline_core.events import run_event_payload, task_event_payload
from pipeline_core.model import (
    DagRun,
    ExpandTask,
    IdempotencyKey,
    MissDeadline,
    MoveRun,
    NoteWait,
    RunType,
    SwitchVersion,
    TaskChange,
    TaskInstance,
    TaskSpec,
    apply_run_change,
    apply_task_change,
    iso,
)
from pipeline_core.state import TaskState
from pipeline_core.store.sql.assets import consume
from pipeline_core.store.sql.common import run_not_found, task_not_found, to_json
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.idempotency import hold_key
from pipeline_core.store.sql.rows import (
    KEY_WHERE,
    RUN_COLUMNS,
    TI_COLUMNS,
    key_params,
    run_fields,
    run_from_row,
    ti_from_row,
)
from pipeline_core.store.sql.tx import Tx


def insert_run(
    sql: Sql,
    tx: Tx,
    pending: Pending,
    run: DagRun,
    tasks: Sequence[TaskSpec],
    now: datetime,
    idempotency: IdempotencyKey | None = None,
    consumes: Sequence[int] = (),
) -> DagRun:
    conf = to_json(dict(run.conf), "conf")
    if idempotency is not None:
        hold_key(tx, run, idempotency, now)
    consume(tx, run.dag_id, consumes)
    stored = DagRun(**{**run_fields(run), "queued_at": run.queued_at or now})
    kind = RunType(run.run_type).value
    if tx.one("SELECT 1 FROM dag_runs WHERE dag_id = ? AND run_id = ?", (run.dag_id, run.run_id)):
        raise Conflict(f"run '{run.run_id}' of DAG '{run.dag_id}' already exists")
    if kind == RunType.SCHEDULED and tx.one(
        "SELECT 1 FROM dag_runs WHERE dag_id = ? AND logical_date = ? AND run_type = 'scheduled'",
        (run.dag_id, iso(run.logical_date)),
    ):
        raise Conflict(
            f"DAG '{run.dag_id}' already has a scheduled run for {iso(run.logical_date)}"
        )
    run_pk = tx.scalar(
        f"INSERT INTO dag_runs ({RUN_COLUMNS}, duration_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            stored.dag_id, stored.run_id, stored.state.value, kind,
            iso(stored.logical_date), conf, stored.note, iso(stored.queued_at),
            iso(stored.start_date), iso(stored.end_date), stored.priority, stored.dag_version,
            stored.duration_ms,
        ),
    )  # fmt: skip
    tx.many(
        f"INSERT INTO task_instances (run_pk, ordinal, {TI_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL, NULL, NULL, -1)",
        [
            (run_pk, i, run.dag_id, run.run_id, t.task_id, TaskState.QUEUED.value,
             t.max_tries, t.pool, t.priority_weight)
            for i, t in enumerate(tasks)
        ],
    )  # fmt: skip
    payload = run_event_payload(stored, None, now)
    sql.append(tx, pending, [("run.state_changed", payload, run.dag_id, run.run_id, None)], now)
    return stored


def move_run(sql: Sql, tx: Tx, pending: Pending, move: MoveRun, now: datetime) -> DagRun:
    dag_id, run_id, expected, new = move.dag_id, move.run_id, move.expected, move.new
    current = run_in(tx, dag_id, run_id)
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
    sql.append(tx, pending, [("run.state_changed", payload, dag_id, run_id, None)], now)
    return updated


def move_tasks(
    sql: Sql, tx: Tx, pending: Pending, changes: Sequence[TaskChange], now: datetime
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
    sql.append(tx, pending, items, now)
    return results


def miss_deadline(sql: Sql, tx: Tx, pending: Pending, miss: MissDeadline, now: datetime) -> None:
    """The run's missed deadline and its ``deadline.missed`` event, unless already recorded."""
    recorded = tx.run(
        "INSERT INTO run_deadlines (dag_id, run_id, deadline_at, missed_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (dag_id, run_id) DO NOTHING",
        (miss.dag_id, miss.run_id, iso(miss.deadline), iso(now)),
    )
    if recorded:
        payload = {
            "dag_id": miss.dag_id,
            "run_id": miss.run_id,
            "deadline": iso(miss.deadline),
            "action": miss.action,
            "timestamp": iso(now),
        }
        sql.append(tx, pending, [("deadline.missed", payload, miss.dag_id, miss.run_id, None)], now)


def run_in(tx: Tx, dag_id: str, run_id: str) -> DagRun:
    row = tx.one(
        f"SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
    )
    if row is None:
        raise run_not_found(dag_id, run_id)
    return run_from_row(row)


def expand_task(sql: Sql, tx: Tx, pending: Pending, expand: ExpandTask, now: datetime) -> None:
    """The instances of a mapped task, in one insert, and their ``task.expanded`` event."""
    key = expand.key
    if expand.count < 1 or not 0 <= expand.first < expand.count:
        raise InvalidRequest(
            f"task '{key.task_id}' must be expanded into at least one new instance "
            f"(indexes {expand.first} to {expand.count - 1})"
        )
    parent = tx.one(
        f"SELECT run_pk, ordinal FROM task_instances WHERE {KEY_WHERE}", key_params(key)
    )
    if parent is None or key.map_index != -1:
        raise task_not_found(key)
    done = tx.scalar(
        "SELECT COUNT(*) FROM task_instances WHERE dag_id = ? AND run_id = ? AND task_id = ? "
        "AND map_index >= ?",
        (*key_params(key)[:3], expand.first),
    )
    if done:
        raise Conflict(f"task '{key.task_id}' of run '{key.run_id}' is already expanded")
    tx.run(  # the indexes are counted out by the database: one statement, no rows sent
        "WITH RECURSIVE n (i) AS (SELECT CAST(? AS INTEGER) UNION ALL SELECT i + 1 FROM n "
        "WHERE i + 1 < ?) "
        f"INSERT INTO task_instances (run_pk, ordinal, {TI_COLUMNS}) "
        "SELECT ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL, NULL, NULL, i FROM n",
        (expand.first, expand.count, parent[0], parent[1], key.dag_id, key.run_id, key.task_id,
         TaskState.QUEUED.value, expand.max_tries, expand.pool, expand.priority_weight),
    )  # fmt: skip
    payload = {"dag_id": key.dag_id, "run_id": key.run_id, "task_id": key.task_id,
               "map_index": -1, "count": expand.count, "timestamp": iso(now)}  # fmt: skip
    sql.append(tx, pending, [("task.expanded", payload, key.dag_id, key.run_id, key.task_id)], now)


def switch_version(
    sql: Sql, tx: Tx, pending: Pending, switch: SwitchVersion, now: datetime
) -> None:
    """A run's new DAG version, the task instances it adds (queued, after the run's own),
    and its ``run.version_changed`` event."""
    row = tx.one(
        "SELECT id, dag_version FROM dag_runs WHERE dag_id = ? AND run_id = ?",
        (switch.dag_id, switch.run_id),
    )
    if row is None:
        raise run_not_found(switch.dag_id, switch.run_id)
    run_pk, previous = row
    tx.run("UPDATE dag_runs SET dag_version = ? WHERE id = ?", (switch.version, run_pk))
    first = (
        int(
            tx.scalar(
                "SELECT COALESCE(MAX(ordinal), -1) FROM task_instances WHERE run_pk = ?", (run_pk,)
            )
        )
        + 1
    )
    tx.many(
        f"INSERT INTO task_instances (run_pk, ordinal, {TI_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL, NULL, NULL, -1)",
        [
            (run_pk, first + i, switch.dag_id, switch.run_id, t.task_id, TaskState.QUEUED.value,
             t.max_tries, t.pool, t.priority_weight)
            for i, t in enumerate(switch.tasks)
        ],
    )  # fmt: skip
    payload = {
        "dag_id": switch.dag_id,
        "run_id": switch.run_id,
        "dag_version": switch.version,
        "previous_version": previous,
        "added_tasks": [t.task_id for t in switch.tasks],
        "timestamp": iso(now),
    }
    sql.append(
        tx, pending, [("run.version_changed", payload, switch.dag_id, switch.run_id, None)], now
    )


def note_wait(sql: Sql, tx: Tx, pending: Pending, note: NoteWait, now: datetime) -> None:
    """A ``flow.waiting`` event: what waits, for what."""
    payload = {"dag_id": note.dag_id, "run_id": note.run_id, "reason": note.reason,
               **dict(note.detail), "timestamp": iso(now)}  # fmt: skip
    sql.append(tx, pending, [("flow.waiting", payload, note.dag_id, note.run_id, None)], now)
