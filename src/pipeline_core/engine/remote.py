"""Control across processes: ``RemoteControl`` is what ``pipeline-core api`` uses when the
engine runs in another process (``pipeline-core scheduler``) on the same database.

Runs are created directly in the store (queued) and the engine picks them up from the event
log; cancel and retry are requests in the event log (``control.requested``) that the engine
answers with ``control.completed``. Pausing is a store write the engine sees as an event.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline_core.errors import Conflict, InvalidRequest, NotFound, PipelineError, StoreUnavailable
from pipeline_core.state import RunState
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord, DagRun, EventQuery, TaskSpec, iso, utcnow

REQUESTED, COMPLETED = "control.requested", "control.completed"
ERRORS: dict[str, type[PipelineError]] = {
    "not_found": NotFound,
    "conflict": Conflict,
    "invalid_state": Conflict,
    "invalid_request": InvalidRequest,
}


class RemoteControl:
    def __init__(self, store: Store, *, timeout: float = 10.0) -> None:
        self.store = store
        self.timeout = timeout

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: datetime | None = None,
        note: str | None = None,
        run_type: str = "manual",
    ) -> DagRun:
        record = self.store.get_dag(dag_id)
        now = utcnow()
        tasks = (record.definition or {}).get("tasks", [])
        specs = [
            TaskSpec(
                t["task_id"],
                t.get("pool", "default_pool"),
                t.get("priority_weight", 1),
                t.get("retries", 0) + 1,
            )
            for t in tasks
        ]
        run = DagRun(
            dag_id=dag_id,
            run_id=run_id or f"{run_type}__{iso(logical_date or now)}",
            state=RunState.QUEUED,
            run_type=run_type,
            logical_date=logical_date or now,
            conf=dict(conf or {}),
            note=note,
        )
        return self.store.create_run(run, specs)

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        return self.store.set_paused(dag_id, paused)

    def cancel(self, dag_id: str, run_id: str) -> DagRun:
        self._request("cancel", dag_id=dag_id, run_id=run_id)
        return self.store.get_run(dag_id, run_id)

    def retry(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None = None,
        include_downstream: bool = True,
    ) -> tuple[DagRun, list[str]]:
        answer = self._request(
            "retry",
            dag_id=dag_id,
            run_id=run_id,
            task_ids=list(task_ids) if task_ids is not None else None,
            include_downstream=include_downstream,
        )
        return self.store.get_run(dag_id, run_id), list(answer.get("requeued", []))

    def _request(self, action: str, **arguments: Any) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        event = self.store.append_event(
            REQUESTED, {"request_id": request_id, "action": action, **arguments}
        )
        seen = event.seq
        deadline = time.monotonic() + self.timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.store.wait_for_events(seen, min(remaining, 1.0))
            events = self.store.read_events(EventQuery(after_seq=seen))
            for answer in events:
                if answer.type == COMPLETED and answer.payload.get("request_id") == request_id:
                    return _result(answer.payload)
            if events:
                seen = events[-1].seq
        raise StoreUnavailable(f"no engine answered the {action} request within {self.timeout:g}s")


def _result(payload: Mapping[str, Any]) -> dict[str, Any]:
    error = payload.get("error")
    if error:
        raise ERRORS.get(error.get("code", ""), Conflict)(error.get("message", "request failed"))
    return dict(payload)
