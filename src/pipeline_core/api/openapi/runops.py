"""The OpenAPI operations CI/CD jobs and operators drive runs with: the idempotent trigger,
the held wait, marks made by hand and clearing tasks."""

from __future__ import annotations

from typing import Any

from pipeline_core.api.openapi.parts import ID, MAX_NOTE, closed, envelope_of, op, param, response
from pipeline_core.api.openapi.schemas import obj, ref

RUN_PATH = "/api/v1/dags/{dag_id}/runs/{run_id}"

IDEMPOTENCY_KEY = {"type": ["string", "null"], "pattern": r"^[!-~]([ -~]{0,253}[!-~])?$"}


def trigger_operation(dag: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    meta = obj(
        ["dag_is_paused"],
        dag_is_paused={"type": "boolean"},
        message={"type": "string"},
        idempotent_replay={"type": "boolean", "const": True},
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


def run_operation_paths(
    run: list[dict[str, Any]], task: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Operations by path and method, merged into the document's paths."""
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
                code={"type": "string", "const": "wait_timeout"},
                message={"type": "string"},
                details=obj(state={"type": "string"}, timeout={"type": "number"}),
            ),
        ),
    )
    patch_run = op(
        "patch_run",
        "runs",
        "Mark a run success or failed, or set its note",
        "200",
        envelope_of(ref("RunDetail")),
        params=run,
        body={
            **closed(
                state={"enum": ["success", "failed"]},
                note={"type": ["string", "null"], "maxLength": MAX_NOTE},
            ),
            "minProperties": 1,
        },
        body_required=True,
    )
    patch_task = op(
        "patch_task_instance",
        "tasks",
        "Mark a task instance success, failed or skipped",
        "200",
        envelope_of(ref("TaskInstance")),
        params=task,
        body=closed(["state"], state={"enum": ["success", "failed", "skipped"]}),
        body_required=True,
    )
    clear = op(
        "clear_run",
        "runs",
        "Clear tasks so they run again (or list them: dry_run)",
        "200",
        envelope_of(
            obj(
                ["dry_run", "task_ids", "task_instances"],
                dry_run={"type": "boolean"},
                task_ids={"type": "array", "items": {"type": "string"}},
                task_instances={"type": "array", "items": ref("TaskInstance")},
                run=ref("Run"),
            )
        ),
        params=run,
        body=closed(
            task_ids={"type": ["array", "null"], "items": ID},
            only_failed={"type": "boolean"},
            include_downstream={"type": "boolean"},
            dry_run={"type": "boolean"},
        ),
    )
    return {
        f"{RUN_PATH}/wait": {"get": wait},
        RUN_PATH: {"patch": patch_run},
        f"{RUN_PATH}/clear": {"post": clear},
        f"{RUN_PATH}/tasks/{{task_id}}": {"patch": patch_task},
    }


def followed_log(operation: dict[str, Any]) -> dict[str, Any]:
    """``get_log`` with ``follow``: the try's log as plain text, streamed while it runs."""
    operation["parameters"].insert(
        -1,
        param(
            "follow",
            "query",
            {"type": "boolean"},
            "stream the try's log as text/plain while it is written; ends when the try ends",
        ),
    )
    success = operation["responses"]["200"]
    success["content"]["text/plain"] = {"schema": {"type": "string"}}
    success["headers"]["ETag"] = {
        "schema": {"type": "string"},
        "required": False,
        "description": "on the JSON answer; a followed log is still being written",
    }
    return operation
