"""The OpenAPI 3.1 document of the v1 API, built from the same vocabulary the routes use.
Tests validate every response they receive against it."""

from __future__ import annotations

from typing import Any

from pipeline_core._version import __version__
from pipeline_core.api.openapi_schemas import SCHEMAS, obj, ref


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
    "400": response("invalid request"),
    "401": response("missing or wrong bearer token"),
    "403": response("a state change from an origin CORS does not allow"),
    "404": response("not found"),
    "405": response("method not allowed"),
    "409": response("conflict"),
    "413": response("body too large"),
    "415": response("body is not application/json, or is content-encoded"),
    "421": response("a Host that is not a name of this server (listening on loopback)"),
    "500": response("internal error"),
    "503": response("unavailable"),
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


def op(
    summary: str,
    ok: str,
    schema: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {ok: response(summary, schema), **ERRORS},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    return operation


def _health() -> dict[str, Any]:
    operation = op("Health of the store and the scheduler", "200", envelope_of(ref("Health")))
    operation["responses"]["503"] = response("the store is unreachable", envelope_of(ref("Health")))
    return operation


def document() -> dict[str, Any]:
    dag, run, task = (
        [param("dag_id")],
        [param("dag_id"), param("run_id")],
        [param("dag_id"), param("run_id"), param("task_id")],
    )
    date_filters = [
        param(f"{c}_{s}", "query", {"type": "string", "format": "date-time"})
        for c in ("logical_date", "start_date", "end_date")
        for s in ("gte", "lte")
    ]
    trigger_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "conf": {"type": "object"},
            "run_id": {"type": "string"},
            "logical_date": {"type": "string", "format": "date-time"},
            "note": {"type": "string"},
        },
    }
    paths = {
        "/api/v1/health": {"get": _health()},
        "/api/v1/version": {
            "get": op("API and package versions", "200", envelope_of(ref("Version")))
        },
        "/api/v1/dags": {
            "get": op(
                "List DAGs",
                "200",
                envelope_of(ref("Dag"), listing=True),
                params=[
                    *PAGE,
                    param("tags", "query"),
                    param("is_paused", "query", {"type": "boolean"}),
                    param("dag_id_pattern", "query"),
                ],
            )
        },
        "/api/v1/dags/{dag_id}": {
            "get": op("A DAG with its tasks", "200", envelope_of(ref("DagDetail")), params=dag),
            "patch": op(
                "Pause or unpause a DAG",
                "200",
                envelope_of(ref("Dag")),
                params=dag,
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["is_paused"],
                    "properties": {"is_paused": {"type": "boolean"}},
                },
            ),
        },
        "/api/v1/dags/{dag_id}/runs": {
            "get": op(
                "List runs",
                "200",
                envelope_of(ref("Run"), listing=True),
                params=[
                    *dag,
                    *PAGE,
                    param("state", "query"),
                    param("run_type", "query"),
                    param("order_by", "query"),
                    *date_filters,
                ],
            ),
            "post": op(
                "Trigger a run",
                "201",
                envelope_of(
                    ref("Run"),
                    meta=obj(
                        ["dag_is_paused"],
                        dag_is_paused={"type": "boolean"},
                        message={"type": "string"},
                    ),
                ),
                params=dag,
                body=trigger_body,
            ),
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}": {
            "get": op(
                "A run with its task instances", "200", envelope_of(ref("RunDetail")), params=run
            ),
            "delete": op("Cancel a run", "200", envelope_of(ref("Run")), params=run),
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/retry": {
            "post": op(
                "Retry failed tasks",
                "200",
                envelope_of(ref("Retry")),
                params=run,
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "task_ids": {"type": "array", "items": {"type": "string"}},
                        "include_downstream": {"type": "boolean"},
                    },
                },
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks": {
            "get": op(
                "Task instances of a run",
                "200",
                envelope_of(ref("TaskInstance"), listing=True),
                params=[*run, *PAGE],
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}": {
            "get": op(
                "A task instance with every try", "200", envelope_of(ref("TaskDetail")), params=task
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/xcom": {
            "get": op(
                "XCom entries of a task",
                "200",
                envelope_of(ref("XCom"), listing=True),
                params=[*task, param("key", "query")],
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs": {
            "get": op(
                "A task's log",
                "200",
                envelope_of(ref("Log")),
                params=[
                    *task,
                    param("try_number", "query", {"type": "integer"}),
                    param("offset", "query", {"type": "integer"}),
                    param("limit", "query", {"type": "integer"}),
                ],
            )
        },
        "/api/v1/dags/{dag_id}/stats": {
            "get": op(
                "DAG statistics",
                "200",
                envelope_of(ref("Stats")),
                params=[*dag, param("since", "query"), param("until", "query")],
            )
        },
        "/api/v1/metrics": {
            "get": op(
                "Metrics snapshot (Prometheus text with Accept: text/plain or ?format=prometheus)",
                "200",
                envelope_of(ref("Metrics")),
                params=[param("format", "query", {"enum": ["json", "prometheus"]})],
            )
        },
        "/api/v1/pools": {
            "get": op("List pools", "200", envelope_of(ref("Pool"), listing=True), params=PAGE),
            "post": op(
                "Create a pool",
                "201",
                envelope_of(ref("Pool")),
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "slots"],
                    "properties": {
                        "name": {"type": "string"},
                        "slots": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
                        "description": {"type": "string"},
                    },
                },
            ),
        },
        "/api/v1/pools/{name}": {
            "patch": op(
                "Resize or describe a pool",
                "200",
                envelope_of(ref("Pool")),
                params=[param("name")],
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "slots": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
                        "description": {"type": "string"},
                    },
                },
            ),
            "delete": op(
                "Delete a pool", "200", envelope_of(ref("PoolDeleted")), params=[param("name")]
            ),
        },
        "/api/v1/import-errors": {
            "get": op(
                "DAG files that failed to load",
                "200",
                envelope_of(ref("ImportError"), listing=True),
                params=PAGE,
            )
        },
        "/api/v1/events": {
            "get": {
                "summary": "Live event stream (Server-Sent Events); resume with Last-Event-ID",
                "parameters": [
                    param("dag_id", "query"),
                    param("run_id", "query"),
                    param("types", "query", description="comma-separated event types"),
                    param("last_event_id", "query", {"type": "integer", "minimum": 0}),
                    param("access_token", "query", description="the bearer token, for EventSource"),
                    param("Last-Event-ID", "header", {"type": "integer", "minimum": 0}),
                ],
                "responses": {
                    "200": {
                        "description": "messages of id, event and data (JSON) lines; "
                        "': keepalive' comments",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": ERRORS["400"],
                    "401": ERRORS["401"],
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "pipeline-core REST API", "version": __version__},
        "servers": [{"url": "/"}],
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }
