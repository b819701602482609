"""The building blocks of the OpenAPI document: shared schemas of parameters and bodies,
the error answers every operation can give, and ``op`` for one operation."""

from __future__ import annotations

from typing import Any

from pipeline_core.api.openapi.schemas import obj, ref
from pipeline_core.dag.model import ID_PATTERN

ID = {"type": "string", "pattern": ID_PATTERN.pattern}
#: Run ids the engine makes (``scheduled__2026-01-01T00:00:00+00:00``) also hold ':' and '+'.
RUN_ID = {"type": "string", "pattern": r"^[A-Za-z0-9_.:+\-]{1,250}$"}
DATE_TIME = {"type": "string", "format": "date-time"}
MAX_SLOTS = 1_000_000
MAX_NOTE = 1000
MAX_DESCRIPTION = 1000
TAGS = [
    {"name": "health", "description": "Liveness, versions and this document"},
    {"name": "dags", "description": "DAGs, their pause state, statistics and import errors"},
    {"name": "runs", "description": "Triggering, listing, cancelling and retrying runs"},
    {"name": "tasks", "description": "Task instances, their tries, XCom and logs"},
    {"name": "pools", "description": "Pools of slots that bound concurrent tasks"},
    {"name": "metrics", "description": "Counters, gauges and histograms"},
    {"name": "events", "description": "The event log as a live Server-Sent Events stream"},
]
DESCRIPTION = (
    "Drive and watch a pipeline-core orchestrator: DAGs, runs, task instances, pools, "
    "metrics and a live event stream. Answers are JSON envelopes (`data`, `meta`; errors as "
    "`error.code`, `error.message`, `error.details`). GET answers carry a strong `ETag`; send "
    "it back in `If-None-Match` to get `304 Not Modified`. With a token configured, send "
    "`Authorization: Bearer <token>` (health and version are public)."
)


def envelope_of(
    schema: dict[str, Any], *, listing: bool = False, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    data = {"type": "array", "items": schema} if listing else schema
    props: dict[str, Any] = {"data": data}
    if listing:
        props["meta"] = ref("Meta")
    elif meta is not None:
        props["meta"] = meta
    return {"type": "object", "properties": props, "required": list(props)}


def response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {
            "description": description,
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": response("invalid request, or framing the server refuses"),
    "401": response("missing or wrong bearer token"),
    "403": response("a state change from an origin CORS does not allow"),
    "404": response("not found"),
    "405": response("method not allowed"),
    "408": response("the request head or body took too long"),
    "409": response("conflict"),
    "413": response("body too large"),
    "415": response("body is not application/json, or is content-encoded"),
    "421": response("a Host that is not a name of this server (listening on loopback)"),
    "431": response("request head too large"),
    "500": response("internal error"),
    "501": response("a request method the server does not know"),
    "503": {
        **response("unavailable: the store, no engine, or too many open connections"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "required": False}},
    },
    "505": response("an HTTP version other than 1.0 and 1.1"),
}
NOT_MODIFIED = {
    "description": "not modified: the answer still has the ETag sent in If-None-Match",
    "headers": {"ETag": {"schema": {"type": "string"}, "required": True}},
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "ETags of answers the client has; 304 if the answer still has one",
}


def param(
    name: str, where: str = "path", schema: dict[str, Any] | None = None, description: str = ""
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
        "description": description,
    }


PAGE = [
    param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
    param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 2**53}),
]


def many(values: Any) -> dict[str, Any]:
    """A query parameter given repeatedly (or comma-separated), each one of ``values``."""
    return {"type": "array", "items": {"enum": list(values)}}


def op(
    operation_id: str,
    tag: str,
    summary: str,
    ok: str,
    schema: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_required: bool = False,
    get: bool = False,
) -> dict[str, Any]:
    """One operation. ``get``: a read, with ``ETag`` on its answer and the 304 it can give."""
    success = response(summary, schema)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": OPERATIONS[operation_id],
        "parameters": [*(params or []), *([IF_NONE_MATCH] if get else [])],
        "responses": {ok: success, **ERRORS},
    }
    if get:
        success["headers"] = {"ETag": {"schema": {"type": "string"}, "required": True}}
        operation["responses"]["304"] = NOT_MODIFIED
    if ok == "201":
        success["headers"] = {"Location": {"schema": {"type": "string"}, "required": True}}
    if body is not None:
        operation["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def closed(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    """A request body object: no other fields are accepted."""
    return {**obj(required or [], **props), "additionalProperties": False}


#: What each operation does, beyond its summary.
OPERATIONS = {
    "get_health": "The store's and the scheduler's state; 503 while the store is unreachable. "
    "Public even when a token is configured.",
    "get_version": "The API version, the package version and the Python version. Public.",
    "list_dags": "Every DAG with its newest run and next fire time, filtered by tags, pause "
    "state or an id pattern, a page at a time.",
    "get_dag": "A DAG's settings and its tasks with their dependencies.",
    "patch_dag": "Pause a DAG (no new runs start; queued ones wait) or unpause it.",
    "list_runs": "A DAG's runs, filtered by state, type and dates, ordered by a field.",
    "trigger_run": "Create a manual run with an optional conf, run id, logical date and note. "
    "The answer's Location is the run's URL; a paused DAG's run waits until it is unpaused. "
    "With an Idempotency-Key header (or idempotency_key), a repeat with the same key and body "
    "answers the first request's run with 200 and meta.idempotent_replay; the same key with "
    "another body is a 409. Keys are held 24 hours by default.",
    "wait_run": "Hold the request until the run is success, failed or cancelled, then answer "
    "it with its task instances; woken by the run's end in the event log, not by polling. "
    "When the timeout passes first: 408 with the run as it is.",
    "get_run": "A run with all its task instances. A finished run's answer is kept, so "
    "asking again costs almost nothing.",
    "cancel_run": "Cancel a run: running tries are killed, unfinished tasks are cancelled. "
    "The run stays in the history, readable, as cancelled.",
    "retry_run": "Queue failed, cancelled or upstream-failed tasks again (all, or the given "
    "ones with or without their downstream tasks).",
    "patch_run": "Mark a run success (its unfinished and failed tasks become success) or "
    "failed (its unfinished tasks fail; running tries are killed), and/or set its note.",
    "patch_task_instance": "Mark one task instance success, failed or skipped; a running try "
    "is killed, and the downstream tasks follow their trigger rules. In a finished run, the "
    "run's state follows its tasks' (marking its failed leaf success makes it succeed).",
    "clear_run": "Queue finished tasks again: the given ones (default: all), with their "
    "downstream when asked, only the failed ones when asked; the run runs again. A dry run "
    "lists what would be cleared and changes nothing.",
    "create_backfill": "Create backfill runs for the DAG's fire times from 'from' to 'to' "
    "(plain dates cover whole days in the DAG's timezone). reprocess: none skips dates that "
    "have a run, failed runs again the ones whose newest run failed, all runs every date. "
    "The scheduler starts them max_active_runs at a time. dry_run lists the dates and what "
    "would happen to each (200), creating nothing. At most --max-backfill-runs fire times.",
    "list_backfills": "A DAG's backfills, oldest first, with their run counts by state.",
    "get_backfill": "A backfill with every date's run and its state.",
    "cancel_backfill": "Cancel a running backfill: dates without a run get none, and its "
    "queued and running runs are cancelled.",
    "list_task_instances": "The task instances of one run, a page at a time.",
    "get_task_instance": "One task instance with every try: start, end, state and error.",
    "get_xcom": "The XCom values a task pushed, optionally only the given keys.",
    "get_log": "A byte range of one try's log (default: the latest try, from the start); "
    "with follow=true, the log from offset on as text/plain, streamed as it is written, "
    "ending when the try ends (or after limit bytes).",
    "get_dag_stats": "Run counts by state, success rate and duration percentiles of a DAG, "
    "and per-task failure and retry rates, over an optional time range.",
    "get_metrics": "Counters, gauges and histograms of the engine, scheduler and pools.",
    "list_pools": "Every pool with its slots, running and queued tries.",
    "create_pool": "Create a pool with a number of slots.",
    "patch_pool": "Change a pool's slots or description.",
    "delete_pool": "Delete a pool that no running try uses (409 otherwise).",
    "list_import_errors": "DAG files that failed to load, with each error's line and message.",
    "stream_events": "The event log as Server-Sent Events, stored ones after Last-Event-ID "
    "first, then live ones.",
    "get_openapi": "This document, which every answer of the API conforms to.",
}
