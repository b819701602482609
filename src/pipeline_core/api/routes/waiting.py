"""``GET .../runs/:run_id/wait?timeout=S``: hold the request until the run ends.

The answer is the run with its task instances, as ``GET .../runs/:run_id`` gives it: 200 once
the run is ``success``, ``failed`` or ``cancelled``, or 408 with the run as it is (``data``) and
a ``wait_timeout`` error when ``timeout`` seconds pass first. The request is held by
``RunWaiters`` (no thread, no polling) and woken by the run's terminal event.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline_core.api.http import HTTPError, Request, Response, bad_request, json_bytes
from pipeline_core.api.params import only
from pipeline_core.api.routes.runs import run_with_tasks
from pipeline_core.api.waits import STOPPING, TIMED_OUT, RunWaiters
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store.base import Store

MAX_WAIT = 3600.0
DEFAULT_WAIT = 300.0


def wait_run(store: Store, waiters: RunWaiters) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        only(request, {"timeout"})
        timeout = _timeout(request)
        run = store.get_run(request.params["dag_id"], request.params["run_id"])
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


def _timeout(request: Request) -> float:
    values = request.query.get("timeout")
    if not values:
        return DEFAULT_WAIT
    text = values[-1]
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_WAIT:  # also refuses nan and inf
        raise bad_request(
            f"'timeout' must be a number of seconds above 0 and at most {MAX_WAIT:g}, "
            f"got {text[:40]!r}"
        )
    return value
