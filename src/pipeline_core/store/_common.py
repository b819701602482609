"""Logic every backend shares: JSON checks, what a transition writes, and its event payload."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.state import (
    FINISHED_RUN_STATES,
    FINISHED_TASK_STATES,
    RunState,
    TaskState,
    run_transition,
    transition,
)
from pipeline_core.store.types import (
    DagRecord,
    DagRun,
    Pool,
    TaskChange,
    TaskInstance,
    TaskKey,
    iso,
    utcnow,
)

TRUNCATION_MARKER = "\n[log truncated: the cap for one try was reached]\n"


def to_json(value: Any, what: str) -> str:
    """Compact JSON text of ``value``; ``InvalidRequest`` naming ``what`` if it is not JSON."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{what} is not JSON-serialisable: {exc}") from None


def apply_task_change(current: TaskInstance, change: TaskChange, now: datetime) -> TaskInstance:
    """The task instance after ``change``; raises ``Conflict``/``InvalidTransition``."""
    if current.state is not change.expected:
        raise Conflict(
            f"task '{current.task_id}' of run '{current.run_id}' is '{current.state.value}', "
            f"not '{change.expected.value}' (another writer changed it)",
            details={"current_state": current.state.value, "expected": change.expected.value},
        )
    new = transition(current.state, change.new)
    start, end = current.start_date, current.end_date
    if new is TaskState.RUNNING:
        start, end = now, None
    elif new is TaskState.QUEUED:
        start, end = None, None
    elif new in FINISHED_TASK_STATES or new is TaskState.UP_FOR_RETRY:
        end = now
    error = change.error if new in (TaskState.FAILED, TaskState.UP_FOR_RETRY) else None
    if new is TaskState.FAILED and change.error is None:
        error = current.error
    try_number = current.try_number if change.try_number is None else change.try_number
    max_tries = current.max_tries if change.max_tries is None else change.max_tries
    return replace(
        current,
        state=new,
        start_date=start,
        end_date=end,
        error=error,
        try_number=try_number,
        max_tries=max_tries,
    )


def task_event_payload(
    before: TaskInstance, after: TaskInstance, now: datetime, reason: str | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "dag_id": after.dag_id,
        "run_id": after.run_id,
        "task_id": after.task_id,
        "try_number": after.try_number,
        "previous_state": before.state.value,
        "new_state": after.state.value,
        "timestamp": iso(now),
    }
    if after.error and after.state in (TaskState.FAILED, TaskState.UP_FOR_RETRY):
        payload["error"] = after.error
    if reason:
        payload["reason"] = reason
    return payload


def apply_run_change(current: DagRun, expected: RunState, new: RunState, now: datetime) -> DagRun:
    if current.state is not expected:
        raise Conflict(
            f"run '{current.run_id}' is '{current.state.value}', not '{expected.value}'",
            details={"current_state": current.state.value, "expected": expected.value},
        )
    run_transition(current.state, new)
    start, end = current.start_date, current.end_date
    if new is RunState.RUNNING:
        start, end = start or now, None
    elif new is RunState.QUEUED:
        end = None
    elif new in FINISHED_RUN_STATES:
        end = now
    return replace(current, state=new, start_date=start, end_date=end)


def run_event_payload(
    run: DagRun, previous: RunState | None, now: datetime, reason: str | None = None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "previous_state": previous.value if previous else None,
        "new_state": run.state.value,
        "timestamp": iso(now),
    }
    if reason:
        payload["reason"] = reason
    return payload


def clip_log(text: str, size: int, cap: int) -> tuple[str, bool]:
    """What of ``text`` fits a log of ``size`` bytes under ``cap``; True when it was cut."""
    data = text.encode("utf-8")
    room = cap - size
    if len(data) <= room:
        return text, False
    kept = data[: max(0, room)].decode("utf-8", errors="ignore")
    return kept + TRUNCATION_MARKER, True


def task_not_found(key: TaskKey) -> NotFound:
    return NotFound(f"no task '{key.task_id}' in run '{key.run_id}' of DAG '{key.dag_id}'")


def run_not_found(dag_id: str, run_id: str) -> NotFound:
    return NotFound(f"no run '{run_id}' of DAG '{dag_id}'")


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def dag_event(record: DagRecord, change: str) -> tuple[str, dict[str, Any], str, None, None]:
    payload = {
        "dag_id": record.dag_id,
        "change": change,
        "is_paused": record.is_paused,
        "is_active": record.is_active,
        "timestamp": iso(utcnow()),
    }
    return ("dag.updated", payload, record.dag_id, None, None)


def pool_event(pool: Pool, change: str) -> tuple[str, dict[str, Any], None, None, None]:
    payload = {
        "pool": pool.name,
        "change": change,
        "slots": pool.slots,
        "description": pool.description,
        "timestamp": iso(utcnow()),
    }
    return ("pool.updated", payload, None, None, None)
