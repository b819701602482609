"""The message that carries one try to a worker, and the report that comes back as an event.

Identities travel, and a mapped instance's own values: the worker reads the task from its
own DAG files and the run from the store, and ``dag_version`` (the definition hash the
engine runs) lets it refuse a try of a DAG its files define differently. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from pipeline_core.engine.core.jobs import Completion, Result
from pipeline_core.events import Event
from pipeline_core.model import TaskKey
from pipeline_core.store.types import Heartbeat, TryClaim, TryReport

KILL_REQUESTED = "task.kill_requested"
REPORTED = "task.reported"


@dataclass(frozen=True, slots=True)
class TryMessage:
    key: TaskKey
    try_number: int
    #: This delivery of the try (a sensor's try goes out once per poke).
    submission: str
    dag_version: str
    timeout: float | None = None
    #: The engine's limit on XCom values, which the worker applies.
    xcom_max_bytes: int | None = None
    #: A mapped task's instance: its values of the ``expand`` keys (JSON values).
    map_values: dict[str, Any] | None = None

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "dag_id": self.key.dag_id,
            "run_id": self.key.run_id,
            "task_id": self.key.task_id,
            "map_index": self.key.map_index,
            "try_number": self.try_number,
            "submission": self.submission,
            "dag_version": self.dag_version,
            "timeout": self.timeout,
            "xcom_max_bytes": self.xcom_max_bytes,
            "map_values": self.map_values,
        }

    @classmethod
    def from_kwargs(cls, data: Mapping[str, Any]) -> TryMessage:
        """``ValueError`` naming the first field that is missing or of the wrong kind."""
        ids = {}
        for name in ("dag_id", "run_id", "task_id", "submission", "dag_version"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"try message: '{name}' must be a non-empty string")
            ids[name] = value
        try_number = data.get("try_number")
        if not _positive_int(try_number):
            raise ValueError("try message: 'try_number' must be a positive integer")
        timeout = data.get("timeout")
        if timeout is not None and (
            not isinstance(timeout, int | float)
            or isinstance(timeout, bool)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ValueError("try message: 'timeout' must be a positive number or null")
        map_index = data.get("map_index", -1)  # a message of a version before mapping has none
        if not isinstance(map_index, int) or isinstance(map_index, bool) or map_index < -1:
            raise ValueError("try message: 'map_index' must be an integer of -1 or more")
        limit = data.get("xcom_max_bytes")
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise ValueError("try message: 'xcom_max_bytes' must be a positive integer or null")
        map_values = data.get("map_values")
        if map_values is not None and (
            not isinstance(map_values, dict) or not all(isinstance(k, str) for k in map_values)
        ):
            raise ValueError("try message: 'map_values' must be a mapping of names or null")
        key = TaskKey(ids["dag_id"], ids["run_id"], ids["task_id"], map_index)
        return cls(
            key,
            try_number,
            ids["submission"],
            ids["dag_version"],
            None if timeout is None else float(timeout),
            limit,
            map_values,
        )


def _positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def report_of(completion: Completion, worker_id: str, submission: str) -> TryReport:
    return TryReport(
        completion.outcome,
        completion.error,
        completion.result.follow,
        completion.result.poke_ok,
        worker_id,
        submission,
    )


def completion_of(event: Event) -> Completion | None:
    """The completion a ``task.reported`` event tells of (``None`` for any other event)."""
    if event.type != REPORTED or not (event.dag_id and event.run_id and event.task_id):
        return None
    payload = event.payload
    follow = payload.get("follow")
    return Completion(
        TaskKey(event.dag_id, event.run_id, event.task_id, int(payload.get("map_index", -1))),
        int(payload["try_number"]),
        str(payload["outcome"]),
        payload.get("error"),
        Result(tuple(follow) if follow is not None else None, bool(payload.get("poke_ok", True))),
    )


def lost_claim_error(
    claim: TryClaim, beat: Heartbeat | None, now: datetime, lost_after: float
) -> str | None:
    """Why ``claim`` is lost (its worker stopped, or its heartbeat is older than
    ``lost_after`` seconds), or ``None`` while its worker is alive or it was reported."""
    if claim.reported_at is not None:
        return None
    if beat is None:
        if (now - claim.claimed_at).total_seconds() <= lost_after:
            return None  # a worker between its claim and its first heartbeat
        return f"worker {claim.worker_id} lost: it has no heartbeat"
    silent = (now - beat.last_heartbeat).total_seconds()
    if silent <= lost_after:
        return None
    return f"worker {claim.worker_id} lost: no heartbeat for {silent:.0f}s"
