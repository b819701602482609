"""``GET .../runs/:run_id/wait?timeout=S``: hold the request until the run ends.

The answer is the run with its task instances, as ``GET .../runs/:run_id`` gives it: 200 once
the run is ``success``, ``failed`` or ``cancelled``, or 408 with the run as it is (``data``) and
a ``wait_timeout`` error when ``timeout`` seconds pass first. The request is held by
``RunWaiters`` (no thread, no polling) and woken by the run's terminal event.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline_core.api.http import HTTPError, Request, Response, json_bytes
from pipeline_core.api.openapi.operation import RUN, Answer, Operation, Param
from pipeline_core.api.openapi.parts import envelope_of
from pipeline_core.api.openapi.schemas import obj, ref
from pipeline_core.api.routes.runs import run_with_tasks
from pipeline_core.api.waits import STOPPING, TIMED_OUT, RunWaiters
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store.base import Store

MAX_WAIT = 3600.0
DEFAULT_WAIT = 300.0

WAIT = Operation(
    "wait_run",
    "runs",
    "Wait for a run to end",
    "Hold the request until the run is success, failed or cancelled, then answer it with "
    "its task instances; woken by the run's end in the event log, not by polling. When the "
    "timeout passes first: 408 with the run as it is.",
    envelope_of(ref("RunDetail")),
    (
        *RUN,
        Param(
            "timeout",
            schema={"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT},
            description=f"seconds to wait at most (default {DEFAULT_WAIT:g})",
        ),
    ),
    answers=[
        Answer(
            "408",
            "the timeout passed first: the run as it is, and a wait_timeout error",
            obj(
                data=ref("RunDetail"),
                error=obj(
                    code={"type": "string", "const": "wait_timeout"},
                    message={"type": "string"},
                    details=obj(state={"type": "string"}, timeout={"type": "number"}),
                ),
            ),
        )
    ],
)


def wait_run(store: Store, waiters: RunWaiters) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        timeout = request.args.get("timeout", DEFAULT_WAIT)
        run = store.runs.get_run(request.params["dag_id"], request.params["run_id"])
        if run.state in FINISHED_RUN_STATES:
            return Response(200, json_bytes({"data": run_with_tasks(store, run)}))
        if request.woken == TIMED_OUT:
            error = {
                "code": "wait_timeout",
                "message": f"run '{run.run_id}' is still {run.state.value} after {timeout:g}s",
                "details": {"state": run.state.value, "timeout": timeout},
            }
            body = {"data": run_with_tasks(store, run), "error": error}
            return Response(408, json_bytes(body))
        if request.woken == STOPPING:
            raise HTTPError(
                503,
                "unavailable",
                "the server is stopping; wait again to go on waiting",
                headers={"Retry-After": "1"},
            )
        deadline = request.arrived + timeout
        key = (run.dag_id, run.run_id)
        return Response(202, later=lambda wake: waiters.hold(key, deadline, wake))

    return handle
