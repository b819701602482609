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
from typing import Any

from pipeline_core.clock import Clock, SystemClock
from pipeline_core.engine.control import Control
from pipeline_core.engine.tasks.triggering import create_run
from pipeline_core.errors import Conflict, InvalidRequest, NotFound, PipelineError, StoreUnavailable
from pipeline_core.model import DagRun, TriggerRequest
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord, EventQuery

REQUESTED, COMPLETED = "control.requested", "control.completed"
ERRORS: dict[str, type[PipelineError]] = {
    "not_found": NotFound,
    "conflict": Conflict,
    "invalid_state": Conflict,
    "invalid_request": InvalidRequest,
}


class RemoteControl:
    def __init__(self, store: Store, *, timeout: float = 10.0, clock: Clock | None = None) -> None:
        self.store = store
        self.timeout = timeout
        self.clock: Clock = clock or SystemClock()

    def trigger(self, request: TriggerRequest) -> DagRun:
        return create_run(self.store, request, self.clock.now())

    def trigger_all(self, requests: Sequence[TriggerRequest]) -> list[DagRun | PipelineError]:
        answers: list[DagRun | PipelineError] = []
        for request in requests:
            try:
                answers.append(self.trigger(request))
            except PipelineError as exc:
                answers.append(exc)
        return answers

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        return self.store.dags.set_paused(dag_id, paused)

    def cancel(self, dag_id: str, run_id: str) -> DagRun:
        self._request("cancel", dag_id=dag_id, run_id=run_id)
        return self.store.runs.get_run(dag_id, run_id)

    def retry(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None = None,
        include_downstream: bool = True,
        map_index: int | None = None,
        use_latest: bool = False,
    ) -> tuple[DagRun, list[str]]:
        answer = self._request(
            "retry",
            dag_id=dag_id,
            run_id=run_id,
            task_ids=list(task_ids) if task_ids is not None else None,
            include_downstream=include_downstream,
            map_index=map_index,
            use_latest=use_latest,
        )
        return self.store.runs.get_run(dag_id, run_id), list(answer.get("requeued", []))

    def mark_run(self, dag_id: str, run_id: str, state: RunState) -> DagRun:
        self._request("mark_run", dag_id=dag_id, run_id=run_id, state=state.value)
        return self.store.runs.get_run(dag_id, run_id)

    def mark_task(
        self, dag_id: str, run_id: str, task_id: str, state: TaskState, map_index: int = -1
    ) -> DagRun:
        self._request(
            "mark_task",
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            state=state.value,
            map_index=map_index,
        )
        return self.store.runs.get_run(dag_id, run_id)

    def _request(self, action: str, **arguments: Any) -> dict[str, Any]:
        request_id = uuid.uuid4().hex
        event = self.store.events.append_event(
            REQUESTED, {"request_id": request_id, "action": action, **arguments}
        )
        seen = event.seq
        deadline = time.monotonic() + self.timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self.store.wait_for_events(seen, min(remaining, 1.0))
            events = self.store.events.read_events(EventQuery(after_seq=seen))
            for answer in events:
                if answer.type == COMPLETED and answer.payload.get("request_id") == request_id:
                    return _result(answer.payload)
            if events:
                seen = events[-1].seq
        raise StoreUnavailable(f"no engine answered the {action} request within {self.timeout:g}s")


def answer_request(control: Control, store: Store, request: dict[str, Any]) -> None:
    """The engine's side: carry out a ``control.requested`` and append its
    ``control.completed`` (with the error's code and message when it was refused)."""
    answer: dict[str, Any] = {"request_id": request.get("request_id")}
    try:
        dag_id, run_id = request["dag_id"], request["run_id"]
        if request.get("action") == "cancel":
            control.cancel(dag_id, run_id)
        elif request.get("action") == "retry":
            _, answer["requeued"] = control.retry(
                dag_id,
                run_id,
                request.get("task_ids"),
                request.get("include_downstream", True),
                request.get("map_index"),
                bool(request.get("use_latest", False)),
            )
        elif request.get("action") == "mark_run":
            control.mark_run(dag_id, run_id, RunState(request["state"]))
        elif request.get("action") == "mark_task":
            control.mark_task(
                dag_id,
                run_id,
                request["task_id"],
                TaskState(request["state"]),
                int(request.get("map_index", -1)),
            )
        else:
            raise Conflict(f"unknown action {request.get('action')!r}")
    except PipelineError as exc:
        answer["error"] = {"code": exc.code, "message": exc.message}
    store.events.append_event(
        COMPLETED, answer, dag_id=request.get("dag_id"), run_id=request.get("run_id")
    )


def _result(payload: Mapping[str, Any]) -> dict[str, Any]:
    error = payload.get("error")
    if error:
        raise ERRORS.get(error.get("code", ""), Conflict)(error.get("message", "request failed"))
    return dict(payload)
