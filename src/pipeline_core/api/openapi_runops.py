"""The OpenAPI operations CI/CD jobs drive runs with: the idempotent trigger and the held
wait."""

from __future__ import annotations

from typing import Any

from pipeline_core.api.openapi_parts import envelope_of, op, param, response
from pipeline_core.api.openapi_schemas import obj, ref

IDEMPOTENCY_KEY = {"type": ["string", "null"], "pattern": r"^[!-~]([ -~]{0,253}[!-~])?$"}


def trigger_operation(dag: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    meta = obj(
        ["dag_is_paused"],
        dag_is_paused={"type": "boolean"},
        message={"type": "string"},
        idempotent_replay={"const": True},
    )
    key = param(
        "Idempotency-Key",
        "header",
        {"type": "string", "pattern": IDEMPOTENCY_KEY["pattern"]},
        "a repeat with the same key and body answers the run the first request created",
    )
    operation = op(
        "trigger_run",
        "runs",
        "Trigger a run",
        "201",
        envelope_of(ref("Run"), meta=meta),
        params=[*dag, key],
        body=body,
    )
    replay = response("the run an earlier request with this idempotency key created", None)
    replay["content"]["application/json"]["schema"] = envelope_of(ref("Run"), meta=meta)
    replay["headers"] = {"Location": {"schema": {"type": "string"}, "required": True}}
    operation["responses"]["200"] = replay
    return operation


def run_operation_paths(run: list[dict[str, Any]]) -> dict[str, Any]:
    wait = op(
        "wait_run",
        "runs",
        "Wait for a run to end",
        "200",
        envelope_of(ref("RunDetail")),
        params=[
            *run,
            param(
                "timeout",
                "query",
                {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                "seconds to wait at most (default 300)",
            ),
        ],
    )
    wait["responses"]["408"] = response(
        "the timeout passed first: the run as it is, and a wait_timeout error",
        obj(
            data=ref("RunDetail"),
            error=obj(
                code={"const": "wait_timeout"},
                message={"type": "string"},
                details=obj(state={"type": "string"}, timeout={"type": "number"}),
            ),
        ),
    )
    return {"/api/v1/dags/{dag_id}/runs/{run_id}/wait": {"get": wait}}
