"""What PostgreSQL's one-call writes send and get back (``store/postgres/functions.py`` runs
them): the writes as JSON, and the events they appended, rebuilt for this process's
subscribers from what the call returns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from pipeline_core.events import ACTOR, Event, run_event_payload, task_event_payload
from pipeline_core.model import (
    CreateRun,
    DagRun,
    ExpandTask,
    MissDeadline,
    MoveRun,
    NoteWait,
    RunType,
    SwitchVersion,
    TaskChange,
    TaskInstance,
    UpdateAssets,
    Write,
    iso,
)
from pipeline_core.state import RUN_ALLOWED, can_transition
from pipeline_core.store.sql.common import to_json


def may_go_in_one_call(writes: Sequence[Write]) -> bool:
    """Whether every write can be sent as is: the moves are ones the state machine allows
    (the function checks only the expected states). Anything else takes the ordinary path,
    which refuses it precisely. A person's writes carry an ``actor`` that only the ordinary
    path adds to their events."""
    if ACTOR.get() is not None:
        return False
    for write in writes:
        if isinstance(write, TaskChange) and not can_transition(write.expected, write.new):
            return False
        if isinstance(write, MoveRun) and write.new not in RUN_ALLOWED[write.expected]:
            return False
        if isinstance(write, CreateRun) and (write.idempotency is not None or write.consumes):
            return False  # the key's and the updates' checks: the ordinary path
        if isinstance(write, MissDeadline | ExpandTask | UpdateAssets | SwitchVersion | NoteWait):
            return False  # rare, or many rows at once: the ordinary path writes it
    return bool(writes)


def dag_ids(writes: Sequence[Write]) -> list[str]:
    """The DAGs ``writes`` touch."""
    ids = {
        w.key.dag_id if isinstance(w, TaskChange | ExpandTask | UpdateAssets) else _dag_of(w)
        for w in writes
    }
    return sorted(ids)


def _dag_of(write: CreateRun | MoveRun | MissDeadline | SwitchVersion | NoteWait) -> str:
    return write.run.dag_id if isinstance(write, CreateRun) else write.dag_id or ""


def writes_json(writes: Sequence[Write], now: datetime) -> str:
    """``InvalidRequest`` (nothing sent) when a run's conf is not JSON."""
    return json.dumps([_write(w, now) for w in writes], separators=(",", ":"))


def _write(write: Write, now: datetime) -> dict[str, Any]:
    if isinstance(write, TaskChange):
        return {
            "kind": "task",
            "dag_id": write.key.dag_id,
            "run_id": write.key.run_id,
            "task_id": write.key.task_id,
            "map_index": write.key.map_index,
            "expected": write.expected.value,
            "new": write.new.value,
            "try_number": write.try_number,
            "max_tries": write.max_tries,
            "error": write.error,
            "reason": write.reason,
        }
    if isinstance(write, MoveRun):
        return {
            "kind": "run",
            "dag_id": write.dag_id,
            "run_id": write.run_id,
            "expected": write.expected.value,
            "new": write.new.value,
            "reason": write.reason,
        }
    assert isinstance(write, CreateRun)  # ``may_go_in_one_call`` let no other write here
    run = _stored(write.run, now)
    return {
        "kind": "create",
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "state": run.state.value,
        "run_type": RunType(run.run_type).value,
        "logical_date": iso(run.logical_date),
        "conf": to_json(dict(run.conf), "conf"),
        "note": run.note,
        "queued_at": iso(run.queued_at),
        "start_date": iso(run.start_date),
        "end_date": iso(run.end_date),
        "duration_ms": run.duration_ms,
        "priority": run.priority,
        "dag_version": run.dag_version,
        "tasks": [
            {
                "task_id": t.task_id,
                "pool": t.pool,
                "priority_weight": t.priority_weight,
                "max_tries": t.max_tries,
            }
            for t in write.tasks
        ],
    }


def _stored(run: DagRun, now: datetime) -> DagRun:
    return run if run.queued_at is not None else replace(run, queued_at=now)


def events_of(
    writes: Sequence[Write], tries: Sequence[tuple[int | None, str | None]], last: int, at: datetime
) -> list[Event]:
    """The events the call appended, one a write, numbered up to ``last``; ``tries`` holds
    each task move's try number and error after it."""
    first = last - len(writes) + 1
    events = []
    for i, (write, (try_number, error)) in enumerate(zip(writes, tries, strict=True)):
        if isinstance(write, TaskChange):
            key = write.key
            after = TaskInstance(
                key.dag_id, key.run_id, key.task_id, write.new, try_number or 0, error=error,
                map_index=key.map_index,
            )  # fmt: skip
            payload = task_event_payload(
                replace(after, state=write.expected), after, at, write.reason
            )
            events.append(
                Event(
                    first + i,
                    "task.state_changed",
                    at,
                    key.dag_id,
                    key.run_id,
                    key.task_id,
                    payload,
                )
            )
        elif isinstance(write, MoveRun):
            moved = (write.dag_id, write.run_id, write.new)
            payload = run_event_payload(moved, write.expected, at, write.reason)
            events.append(
                Event(first + i, "run.state_changed", at, write.dag_id, write.run_id, None, payload)
            )
        else:
            assert isinstance(write, CreateRun)
            run = _stored(write.run, at)
            payload = run_event_payload(run, None, at)
            events.append(
                Event(first + i, "run.state_changed", at, run.dag_id, run.run_id, None, payload)
            )
    return events
