"""Runs, task instances, XCom and task logs in SQL (the second half of ``SqlStore``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline_core.errors import Conflict
from pipeline_core.state import FINISHED_RUN_STATES, RunState, TaskState
from pipeline_core.store._common import (
    apply_run_change,
    apply_task_change,
    clip_log,
    run_event_payload,
    run_not_found,
    task_event_payload,
    task_not_found,
    to_json,
)
from pipeline_core.store._sql import (
    RUN_COLUMNS,
    RUN_ORDER_COLUMNS,
    TI_COLUMNS,
    SqlStore,
    _Pending,
    equal_filters,
)
from pipeline_core.store._sql_stats import run_stats, task_stats
from pipeline_core.store._tx import Tx, parse_ts
from pipeline_core.store.types import (
    DagRun,
    LogChunk,
    Page,
    RunQuery,
    RunStats,
    TaskChange,
    TaskInstance,
    TaskInstanceQuery,
    TaskKey,
    TaskSpec,
    TaskStats,
    XComEntry,
    iso,
)

_KEY = "dag_id = ? AND run_id = ? AND task_id = ?"
XCOM_COLUMNS = "dag_id, run_id, task_id, key, value, size_bytes, timestamp"


class SqlRunStore(SqlStore):
    """``SqlStore`` plus runs, task instances, XCom and logs."""

    # --- runs -----------------------------------------------------------------------
    def create_run(self, run: DagRun, tasks: Sequence[TaskSpec]) -> DagRun:
        conf = to_json(dict(run.conf), "conf")
        now = self.clock()
        stored = DagRun(**{**_run_fields(run), "queued_at": run.queued_at or now})

        def work(tx: Tx, pending: _Pending) -> DagRun:
            if tx.one(
                "SELECT 1 FROM dag_runs WHERE dag_id = ? AND run_id = ?", (run.dag_id, run.run_id)
            ):
                raise Conflict(f"run '{run.run_id}' of DAG '{run.dag_id}' already exists")
            if run.run_type == "scheduled" and tx.one(
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
                    stored.dag_id, stored.run_id, stored.state.value, stored.run_type,
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
        return _run(row)

    def transition_run(
        self,
        dag_id: str,
        run_id: str,
        expected: RunState,
        new: RunState,
        *,
        reason: str | None = None,
    ) -> DagRun:
        def work(tx: Tx, pending: _Pending) -> DagRun:
            row = tx.one(
                f"SELECT {RUN_COLUMNS} FROM dag_runs WHERE dag_id = ? AND run_id = ?",
                (dag_id, run_id),
            )
            if row is None:
                raise run_not_found(dag_id, run_id)
            now = self.clock()
            current = _run(row)
            updated = apply_run_change(current, expected, new, now)
            changed = tx.run(
                "UPDATE dag_runs SET state = ?, start_date = ?, end_date = ?, duration_ms = ? "
                "WHERE dag_id = ? AND run_id = ? AND state = ?",
                (new.value, iso(updated.start_date), iso(updated.end_date), updated.duration_ms,
                 dag_id, run_id, expected.value),
            )  # fmt: skip
            if changed != 1:
                raise Conflict(f"run '{run_id}' changed state concurrently")
            payload = run_event_payload(updated, current.state, now, reason)
            self._append(tx, pending, [("run.state_changed", payload, dag_id, run_id, None)], now)
            return updated

        result: DagRun = self._write(work)
        return result

    def delete_run(self, dag_id: str, run_id: str) -> None:
        def work(tx: Tx, pending: _Pending) -> None:
            if not _delete_runs(tx, "dag_id = ? AND run_id = ?", (dag_id, run_id)):
                raise run_not_found(dag_id, run_id)

        self._write(work)

    def prune_runs(self, dag_id: str, older_than: datetime) -> int:
        finished = tuple(s.value for s in FINISHED_RUN_STATES)
        where = f"dag_id = ? AND logical_date < ? AND state IN ({', '.join('?' for _ in finished)})"
        count: int = self._write(
            lambda tx, _: _delete_runs(tx, where, (dag_id, iso(older_than), *finished))
        )
        return count

    def query_runs(self, query: RunQuery) -> Page[DagRun]:
        where, params = _run_filters(query)
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
            return Page([_run(r) for r in rows], total, query.limit, query.offset)

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
        return {run.dag_id: run for run in map(_run, rows)}

    def count_active_runs(self, dag_id: str) -> int:
        sql = "SELECT COUNT(*) FROM dag_runs WHERE dag_id = ? AND state = ?"
        return int(self._read(lambda tx: tx.scalar(sql, (dag_id, RunState.RUNNING.value))))

    # --- task instances -------------------------------------------------------------
    def get_task_instance(self, key: TaskKey) -> TaskInstance:
        row = self._read(
            lambda tx: tx.one(f"SELECT {TI_COLUMNS} FROM task_instances WHERE {_KEY}", _key(key))
        )
        if row is None:
            raise task_not_found(key)
        return _ti(row)

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
            return Page([_ti(r) for r in rows], total, query.limit, query.offset)

        result: Page[TaskInstance] = self._read(work)
        return result

    def transition_tasks(self, changes: Sequence[TaskChange]) -> list[TaskInstance]:
        def work(tx: Tx, pending: _Pending) -> list[TaskInstance]:
            now = self.clock()
            results, items = [], []
            for change in changes:
                row = tx.one(
                    f"SELECT {TI_COLUMNS} FROM task_instances WHERE {_KEY}", _key(change.key)
                )
                if row is None:
                    raise task_not_found(change.key)
                before = _ti(row)
                after = apply_task_change(before, change, now)
                changed = tx.run(
                    "UPDATE task_instances SET state = ?, try_number = ?, max_tries = ?, "
                    "start_date = ?, end_date = ?, duration_ms = ?, error = ? "
                    f"WHERE {_KEY} AND state = ?",
                    (after.state.value, after.try_number, after.max_tries, iso(after.start_date),
                     iso(after.end_date), after.duration_ms, after.error, *_key(change.key),
                     before.state.value),
                )  # fmt: skip
                if changed != 1:
                    raise Conflict(f"task '{change.key.task_id}' changed state concurrently")
                payload = task_event_payload(before, after, now, change.reason)
                items.append(
                    ("task.state_changed", payload, after.dag_id, after.run_id, after.task_id)
                )
                results.append(after)
            self._append(tx, pending, items, now)
            return results

        result: list[TaskInstance] = self._write(work)
        return result

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

    # --- XCom -----------------------------------------------------------------------
    def set_xcom(self, key: TaskKey, xcom_key: str, value: Any) -> XComEntry:
        text = to_json(value, f"XCom value '{xcom_key}'")
        entry = XComEntry(*_key(key), xcom_key, value, len(text.encode("utf-8")), self.clock())

        def work(tx: Tx, pending: _Pending) -> XComEntry:
            if tx.one(f"SELECT 1 FROM task_instances WHERE {_KEY}", _key(key)) is None:
                raise task_not_found(key)
            tx.run(
                f"INSERT INTO xcom ({XCOM_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dag_id, run_id, task_id, key) DO UPDATE "
                "SET value = excluded.value, size_bytes = excluded.size_bytes, "
                "timestamp = excluded.timestamp",
                (*_key(key), xcom_key, text, entry.size_bytes, iso(entry.timestamp)),
            )
            return entry

        result: XComEntry = self._write(work)
        return result

    def get_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry | None:
        row = self._read(
            lambda tx: tx.one(
                f"SELECT {XCOM_COLUMNS} FROM xcom WHERE {_KEY} AND key = ?",
                (*_key(key), xcom_key),
            )
        )
        return _xcom(row) if row else None

    def list_xcom(self, key: TaskKey) -> list[XComEntry]:
        rows = self._read(
            lambda tx: tx.rows(
                f"SELECT {XCOM_COLUMNS} FROM xcom WHERE {_KEY} ORDER BY key",
                _key(key),
            )
        )
        return [_xcom(r) for r in rows]

    def list_run_xcom(self, dag_id: str, run_id: str) -> list[XComEntry]:
        sql = (
            f"SELECT {XCOM_COLUMNS} FROM xcom WHERE dag_id = ? AND run_id = ? "
            "ORDER BY timestamp, task_id, key"
        )
        return [_xcom(r) for r in self._read(lambda tx: tx.rows(sql, (dag_id, run_id)))]

    def delete_xcom(self, key: TaskKey, xcom_key: str | None = None) -> int:
        if xcom_key is None:
            count: int = self._write(
                lambda tx, _: tx.run(f"DELETE FROM xcom WHERE {_KEY}", _key(key))
            )
        else:
            count = self._write(
                lambda tx, _: tx.run(
                    f"DELETE FROM xcom WHERE {_KEY} AND key = ?", (*_key(key), xcom_key)
                )
            )
        return count

    # --- logs -----------------------------------------------------------------------
    def append_log(self, key: TaskKey, try_number: int, text: str) -> None:
        if not text:
            return

        def work(tx: Tx, pending: _Pending) -> None:
            row = tx.one(
                f"SELECT size, truncated FROM log_sizes WHERE {_KEY} AND try_number = ?",
                (*_key(key), try_number),
            )
            size, truncated = (int(row[0]), bool(row[1])) if row else (0, False)
            if truncated:
                return
            kept, cut = clip_log(text, size, self.log_cap_bytes)
            data = kept.encode("utf-8")
            tx.run(
                "INSERT INTO task_logs (dag_id, run_id, task_id, try_number, byte_offset, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (*_key(key), try_number, size, kept),
            )
            tx.run(
                "INSERT INTO log_sizes (dag_id, run_id, task_id, try_number, size, truncated) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dag_id, run_id, task_id, try_number) DO UPDATE SET "
                "size = excluded.size, truncated = excluded.truncated",
                (*_key(key), try_number, size + len(data), cut),
            )

        self._write(work)

    def read_log(
        self, key: TaskKey, try_number: int, *, offset: int = 0, limit: int | None = None
    ) -> LogChunk:
        def work(tx: Tx) -> LogChunk:
            meta = tx.one(
                f"SELECT size, truncated FROM log_sizes WHERE {_KEY} AND try_number = ?",
                (*_key(key), try_number),
            )
            if meta is None:
                if tx.one(f"SELECT 1 FROM task_instances WHERE {_KEY}", _key(key)) is None:
                    raise task_not_found(key)
                return LogChunk("", offset, offset, 0, False)
            chunks = tx.rows(
                f"SELECT byte_offset, data FROM task_logs WHERE {_KEY} AND try_number = ? "
                "AND byte_offset + LENGTH(data) * 4 > ? ORDER BY byte_offset",
                (*_key(key), try_number, offset),
            )
            return _slice_log(chunks, int(meta[0]), bool(meta[1]), offset, limit)

        result: LogChunk = self._read(work)
        return result


def _slice_log(
    chunks: list[tuple[Any, ...]], size: int, truncated: bool, offset: int, limit: int | None
) -> LogChunk:
    data = b"".join(str(text).encode("utf-8") for _, text in chunks)
    base = int(chunks[0][0]) if chunks else size
    start = max(0, offset - base)
    end = len(data) if limit is None else min(len(data), start + limit)
    piece = data[start:end]
    return LogChunk(
        piece.decode("utf-8", errors="replace"), base + start, base + end, size, truncated
    )


def _delete_runs(tx: Tx, where: str, params: Sequence[Any]) -> int:
    runs = tx.rows(f"SELECT id, dag_id, run_id FROM dag_runs WHERE {where}", params)
    for run_pk, dag_id, run_id in runs:
        for table in ("xcom", "task_logs", "log_sizes"):
            tx.run(f"DELETE FROM {table} WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
        tx.run("DELETE FROM task_instances WHERE run_pk = ?", (run_pk,))
        tx.run("DELETE FROM dag_runs WHERE id = ?", (run_pk,))
    return len(runs)


def _run_filters(query: RunQuery) -> tuple[list[str], list[Any]]:
    where, params = equal_filters(query, ("dag_id",))
    if query.states:
        where.append(f"state IN ({', '.join('?' for _ in query.states)})")
        params.extend(s.value for s in query.states)
    if query.run_types:
        where.append(f"run_type IN ({', '.join('?' for _ in query.run_types)})")
        params.extend(query.run_types)
    for column in ("logical_date", "start_date", "end_date"):
        for suffix, op in (("gte", ">="), ("lte", "<=")):
            value = getattr(query, f"{column}_{suffix}")
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(iso(value))
    return where, params


def _key(key: TaskKey) -> tuple[str, str, str]:
    return (key.dag_id, key.run_id, key.task_id)


def _run_fields(run: DagRun) -> dict[str, Any]:
    return {name: getattr(run, name) for name in DagRun.__slots__}


def _run(row: tuple[Any, ...]) -> DagRun:
    return DagRun(
        dag_id=row[0],
        run_id=row[1],
        state=RunState(row[2]),
        run_type=row[3],
        logical_date=parse_ts(row[4]),
        conf=json.loads(row[5]),
        note=row[6],
        queued_at=parse_ts(row[7]),
        start_date=parse_ts(row[8]),
        end_date=parse_ts(row[9]),
    )


def _ti(row: tuple[Any, ...]) -> TaskInstance:
    return TaskInstance(
        dag_id=row[0],
        run_id=row[1],
        task_id=row[2],
        state=TaskState(row[3]),
        try_number=int(row[4]),
        max_tries=int(row[5]),
        pool=row[6],
        priority_weight=int(row[7]),
        start_date=parse_ts(row[8]),
        end_date=parse_ts(row[9]),
        error=row[10],
    )


def _xcom(row: tuple[Any, ...]) -> XComEntry:
    return XComEntry(
        row[0], row[1], row[2], row[3], json.loads(row[4]), int(row[5]), parse_ts(row[6])
    )
