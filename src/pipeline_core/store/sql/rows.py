"""Column lists and row mapping shared by the SQL modules."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pipeline_core.model import DagRun, RunType, TaskInstance, TaskKey
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import DagRecord, Page, XComEntry

T = TypeVar("T")

DAG_COLUMNS = (
    "dag_id, is_paused, is_active, fileloc, schedule, timezone, description, tags, "
    "definition_hash, definition, task_count, last_parsed_at"
)

#: A listing reads, instead of the (possibly large) serialised definition, only what it
#: shows of it (``LISTED_KEYS``, kept apart as ``listed``).
DAG_LIST_COLUMNS = DAG_COLUMNS.replace("definition,", "listed,")
#: What a DAG listing shows of a definition: the next run's bounds, the asset schedule.
LISTED_KEYS = ("start_date", "end_date", "assets")

RUN_COLUMNS = (
    "dag_id, run_id, state, run_type, logical_date, conf, note, queued_at, start_date, end_date, "
    "priority, dag_version"
)

TI_COLUMNS = (
    "dag_id, run_id, task_id, state, try_number, max_tries, pool, priority_weight, "
    "start_date, end_date, error, map_index"
)

EVENT_COLUMNS = "seq, type, timestamp, dag_id, run_id, task_id, payload"

XCOM_COLUMNS = "dag_id, run_id, task_id, key, value, size_bytes, timestamp, map_index"

RUN_ORDER_COLUMNS = {
    "logical_date": "logical_date",
    "start_date": "start_date",
    "end_date": "end_date",
    "duration": "duration_ms",
    "state": "state",
}
#: Where one task instance's rows are.
KEY_WHERE = "dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?"


def equal_filters(query: Any, columns: Sequence[str]) -> tuple[list[str], list[Any]]:
    """``column = ?`` conditions for every listed attribute of ``query`` that is set."""
    where: list[str] = []
    params: list[Any] = []
    for column in columns:
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


#: The C scanner behind ``json.loads``, minus the whitespace handling that compact JSON
#: written by ``to_json`` never needs: event reads decode thousands of payloads per call.
_SCAN_ONCE = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def paged(
    tx: Tx,
    source: str,
    where: Sequence[str],
    params: Sequence[Any],
    order: str,
    window: tuple[int, int],
    convert: Callable[[Any], T],
    *,
    one_scan: bool = False,
) -> Page[T]:
    """One page of ``source`` (``"COLUMNS FROM table"``) where every condition of ``where``
    holds, in ``order``, ``window`` being ``(limit, offset)``; with the total count.

    ``one_scan``: count in the page's query (``COUNT(*) OVER ()``) — for conditions that scan
    the table anyway; an index answers a plain count faster than a window can."""
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    columns, table = source.split(" FROM ", 1)
    page = f"ORDER BY {order} LIMIT ? OFFSET ?"
    if one_scan:
        counted = f"SELECT {columns}, COUNT(*) OVER () FROM {table}{clause} {page}"
        rows = tx.rows(counted, [*params, *window])
        if rows or not window[1]:
            total = int(rows[0][-1]) if rows else 0
            return Page([convert(r[:-1]) for r in rows], total, *window)
    total = int(tx.scalar(f"SELECT COUNT(*) FROM {table}{clause}", params))
    rows = tx.rows(f"SELECT {source}{clause} {page}", [*params, *window])
    return Page([convert(r) for r in rows], total, *window)


def decode_json(text: str) -> Any:
    return _SCAN_ONCE(text, 0)[0]


def first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def dag_fields(record: DagRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in DagRecord.__slots__}


def same_dag(a: DagRecord, b: DagRecord) -> bool:
    ignore = {"last_parsed_at"}
    return all(getattr(a, f) == getattr(b, f) for f in DagRecord.__slots__ if f not in ignore)


def dag_from_row(row: tuple[Any, ...]) -> DagRecord:
    return DagRecord(
        dag_id=row[0],
        is_paused=bool(row[1]),
        is_active=bool(row[2]),
        fileloc=row[3],
        schedule=row[4],
        timezone=row[5],
        description=row[6],
        tags=tuple(decode_json(row[7])),
        definition_hash=row[8],
        definition=json.loads(row[9]) if row[9] is not None else None,
        task_count=int(row[10]),
        last_parsed_at=parse_ts(row[11]),
    )


def key_params(key: TaskKey) -> tuple[str, str, str, int]:
    """The values of ``KEY_WHERE``."""
    return (key.dag_id, key.run_id, key.task_id, key.map_index)


def run_fields(run: DagRun) -> dict[str, Any]:
    return {name: getattr(run, name) for name in DagRun.__slots__}


def run_from_row(row: tuple[Any, ...]) -> DagRun:
    return DagRun(
        dag_id=row[0],
        run_id=row[1],
        state=RunState(row[2]),
        run_type=RunType(row[3]),
        logical_date=parse_ts(row[4]),
        conf=json.loads(row[5]),
        note=row[6],
        queued_at=parse_ts(row[7]),
        start_date=parse_ts(row[8]),
        end_date=parse_ts(row[9]),
        priority=int(row[10] or 0),
        dag_version=row[11],
    )


def ti_from_row(row: tuple[Any, ...]) -> TaskInstance:
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
        map_index=int(row[11]),
    )


def xcom_from_row(row: tuple[Any, ...]) -> XComEntry:
    return XComEntry(
        row[0],
        row[1],
        row[2],
        row[3],
        json.loads(row[4]),
        int(row[5]),
        parse_ts(row[6]),
        int(row[7]),
    )
