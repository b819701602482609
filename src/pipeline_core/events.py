"""The append-only event log's values: the event types, an event, and the payloads a task's
or a run's move appends. Pure, as ``model`` is."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline_core.model import DagRun, TaskInstance, iso
from pipeline_core.state import RunState, TaskState

EVENT_TYPES = (
    "task.state_changed", "run.state_changed", "run.updated", "dag.updated", "pool.updated",
    "backfill.updated", "deadline.missed", "notification.delivered", "notification.failed",
    "notification.redelivery", "task.expanded", "asset.updated", "token.revoked",
    "run.version_changed", "flow.waiting", "run.deleted",
)  # fmt: skip
#: A token was revoked: servers end the event streams it holds.
TOKEN_REVOKED = "token.revoked"

#: Who caused what is being written (an API token's name), when a person did: the store adds
#: it as ``actor`` to the payload of every event appended meanwhile.
ACTOR: ContextVar[str | None] = ContextVar("actor", default=None)


@contextmanager
def acting(actor: str | None) -> Iterator[None]:
    """Events appended inside this block carry ``actor``."""
    token = ACTOR.set(actor)
    try:
        yield
    finally:
        ACTOR.reset(token)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event log."""

    seq: int
    type: str
    timestamp: datetime
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The event as the API and the stream show it: what it is about (``dag_id``,
        ``run_id``, ``task_id``, when set), then its payload."""
        about = (("dag_id", self.dag_id), ("run_id", self.run_id), ("task_id", self.task_id))
        return {
            "seq": self.seq,
            "type": self.type,
            **{name: value for name, value in about if value is not None},
            **self.payload,
            "timestamp": iso(self.timestamp),
        }


def task_event_payload(
    before: TaskInstance, after: TaskInstance, now: datetime, reason: str | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "dag_id": after.dag_id,
        "run_id": after.run_id,
        "task_id": after.task_id,
        "map_index": after.map_index,
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


def run_event_payload(
    run: DagRun | tuple[str, str, RunState],
    previous: RunState | None,
    now: datetime,
    reason: str | None = None,
) -> dict[str, Any]:
    """``run`` is the run after the move, or its ``(dag_id, run_id, new state)``."""
    dag_id, run_id, state = (run.dag_id, run.run_id, run.state) if isinstance(run, DagRun) else run
    payload: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": run_id,
        "previous_state": previous.value if previous else None,
        "new_state": state.value,
        "timestamp": iso(now),
    }
    if reason:
        payload["reason"] = reason
    return payload
