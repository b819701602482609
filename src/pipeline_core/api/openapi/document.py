"""The OpenAPI 3.1 document of the v1 API, built from the same vocabulary the routes use.

Every operation has an ``operationId`` and a tag (generated clients get short, stable names),
every answer a route can give is listed with its content type, and every rule a handler
enforces (id patterns, ranges, enums, required bodies, nullability) is in the schemas, so a
schema-driven fuzzer and the handlers agree. Tests validate every response they receive
against it.
"""

from __future__ import annotations

from typing import Any

from pipeline_core._version import __version__
from pipeline_core.api.openapi.backfills import backfill_paths
from pipeline_core.api.openapi.parts import (
    DATE_TIME,
    DESCRIPTION,
    ERRORS,
    ID,
    MAX_DESCRIPTION,
    MAX_NOTE,
    MAX_SLOTS,
    OPERATIONS,
    PAGE,
    RUN_ID,
    TAGS,
    closed,
    envelope_of,
    many,
    op,
    param,
    response,
)
from pipeline_core.api.openapi.runops import (
    IDEMPOTENCY_KEY,
    followed_log,
    run_operation_paths,
    trigger_operation,
)
from pipeline_core.api.openapi.schemas import SCHEMAS, ref
from pipeline_core.model import EVENT_TYPES, RUN_TYPES
from pipeline_core.state import RunState
from pipeline_core.store.types import RUN_ORDER_FIELDS


def _health() -> dict[str, Any]:
    operation = op(
        "get_health",
        "health",
        "Health of the store and the scheduler",
        "200",
        envelope_of(ref("Health")),
        get=True,
    )
    operation["responses"]["503"] = response("the store is unreachable", envelope_of(ref("Health")))
    return operation


def _metrics() -> dict[str, Any]:
    operation = op(
        "get_metrics",
        "metrics",
        "Metrics: a JSON snapshot, Prometheus text (Accept: text/plain or ?format=prometheus) "
        "or OpenMetrics (Accept: application/openmetrics-text or ?format=openmetrics)",
        "200",
        envelope_of(ref("Metrics")),
        params=[param("format", "query", {"enum": ["json", "prometheus", "openmetrics"]})],
        get=True,
    )
    text = {"schema": {"type": "string"}}
    operation["responses"]["200"]["content"].update(
        {"text/plain": text, "application/openmetrics-text": text}
    )
    return operation


def _events() -> dict[str, Any]:
    return {
        "operationId": "stream_events",
        "tags": ["events"],
        "summary": "Live event stream (Server-Sent Events); resume with Last-Event-ID",
        "description": OPERATIONS["stream_events"]
        + " Each message is `id: <seq>`, `event: <type>` and `data: <Event as "
        "one-line JSON>`; `: keepalive` comments keep idle streams open. Over HTTP/1.1 the "
        "body is chunked, one chunk per write.",
        "parameters": [
            param("dag_id", "query", ID),
            param("run_id", "query", RUN_ID),
            param("types", "query", many(EVENT_TYPES), "event types (repeat or comma-separate)"),
            param("last_event_id", "query", {"type": "integer", "minimum": 0, "maximum": 2**53}),
            param("access_token", "query", description="the bearer token, for EventSource"),
            param("Last-Event-ID", "header", {"type": "integer", "minimum": 0, "maximum": 2**53}),
        ],
        "responses": {
            "200": {
                "description": "the stream; each message's data is an Event",
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "x-item-schema": ref("Event"),
                    }
                },
            },
            **{code: ERRORS[code] for code in ("400", "401", "403", "421", "503")},
        },
    }


def document() -> dict[str, Any]:
    dag = [param("dag_id", schema=ID)]
    run = [*dag, param("run_id", schema=RUN_ID)]
    task = [*run, param("task_id", schema=ID)]
    pool = [param("name", schema=ID)]
    date_filters = [
        param(f"{c}_{s}", "query", DATE_TIME)
        for c in ("logical_date", "start_date", "end_date")
        for s in ("gte", "lte")
    ]
    order = [f"{sign}{field}" for field in RUN_ORDER_FIELDS for sign in ("", "-")]
    note = {"type": ["string", "null"], "maxLength": MAX_NOTE}
    slots = {"type": "integer", "minimum": 0, "maximum": MAX_SLOTS}
    description = {"type": "string", "maxLength": MAX_DESCRIPTION}
    trigger_body = closed(
        conf={"type": ["object", "null"]},
        run_id={**ID, "type": ["string", "null"]},
        logical_date={**DATE_TIME, "type": ["string", "null"]},
        note=note,
        idempotency_key=IDEMPOTENCY_KEY,
    )
    paths = {
        "/api/v1/health": {"get": _health()},
        "/api/v1/version": {
            "get": op(
                "get_version",
                "health",
                "API and package versions",
                "200",
                envelope_of(ref("Version")),
                get=True,
            )
        },
        "/api/v1/dags": {
            "get": op(
                "list_dags",
                "dags",
                "List DAGs",
                "200",
                envelope_of(ref("Dag"), listing=True),
                params=[
                    *PAGE,
                    param("tags", "query", {"type": "array", "items": {"type": "string"}}),
                    param("is_paused", "query", {"type": "boolean"}),
                    param("dag_id_pattern", "query", description="a part of dag_id (any case)"),
                ],
                get=True,
            )
        },
        "/api/v1/dags/{dag_id}": {
            "get": op(
                "get_dag",
                "dags",
                "A DAG with its tasks",
                "200",
                envelope_of(ref("DagDetail")),
                params=dag,
                get=True,
            ),
            "patch": op(
                "patch_dag",
                "dags",
                "Pause or unpause a DAG",
                "200",
                envelope_of(ref("Dag")),
                params=dag,
                body=closed(["is_paused"], is_paused={"type": "boolean"}),
                body_required=True,
            ),
        },
        "/api/v1/dags/{dag_id}/runs": {
            "get": op(
                "list_runs",
                "runs",
                "List runs",
                "200",
                envelope_of(ref("Run"), listing=True),
                params=[
                    *dag,
                    *PAGE,
                    param("state", "query", many(s.value for s in RunState)),
                    param("run_type", "query", many(RUN_TYPES)),
                    param("order_by", "query", {"enum": order}),
                    *date_filters,
                ],
                get=True,
            ),
            "post": trigger_operation(dag, trigger_body),
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}": {
            "get": op(
                "get_run",
                "runs",
                "A run with its task instances",
                "200",
                envelope_of(ref("RunDetail")),
                params=run,
                get=True,
            ),
            "delete": op(
                "cancel_run",
                "runs",
                "Cancel a run (it stays readable, cancelled)",
                "200",
                envelope_of(ref("Run")),
                params=run,
            ),
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/retry": {
            "post": op(
                "retry_run",
                "runs",
                "Retry failed tasks",
                "200",
                envelope_of(ref("Retry")),
                params=run,
                body=closed(
                    task_ids={"type": ["array", "null"], "items": ID},
                    include_downstream={"type": "boolean"},
                ),
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks": {
            "get": op(
                "list_task_instances",
                "tasks",
                "Task instances of a run",
                "200",
                envelope_of(ref("TaskInstance"), listing=True),
                params=[*run, *PAGE],
                get=True,
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}": {
            "get": op(
                "get_task_instance",
                "tasks",
                "A task instance with every try",
                "200",
                envelope_of(ref("TaskDetail")),
                params=task,
                get=True,
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/xcom": {
            "get": op(
                "get_xcom",
                "tasks",
                "XCom entries of a task",
                "200",
                envelope_of(ref("XCom"), listing=True),
                params=[
                    *task,
                    param("key", "query", {"type": "array", "items": {"type": "string"}}),
                    *PAGE,
                ],
                get=True,
            )
        },
        "/api/v1/dags/{dag_id}/runs/{run_id}/tasks/{task_id}/logs": {
            "get": followed_log(
                op(
                    "get_log",
                    "tasks",
                    "A task's log (a byte range of one try)",
                    "200",
                    envelope_of(ref("Log")),
                    params=[
                        *task,
                        param(
                            "try_number",
                            "query",
                            {"type": "integer", "minimum": 1, "maximum": 2**53},
                        ),
                        param(
                            "offset", "query", {"type": "integer", "minimum": 0, "maximum": 2**53}
                        ),
                        param(
                            "limit",
                            "query",
                            {"type": "integer", "minimum": 1, "maximum": 4 * 2**20},
                        ),
                    ],
                    get=True,
                )
            )
        },
        "/api/v1/dags/{dag_id}/stats": {
            "get": op(
                "get_dag_stats",
                "dags",
                "DAG statistics",
                "200",
                envelope_of(ref("Stats")),
                params=[
                    *dag,
                    param("since", "query", DATE_TIME),
                    param("until", "query", DATE_TIME),
                ],
                get=True,
            )
        },
        "/api/v1/metrics": {"get": _metrics()},
        "/api/v1/pools": {
            "get": op(
                "list_pools",
                "pools",
                "List pools",
                "200",
                envelope_of(ref("Pool"), listing=True),
                params=PAGE,
                get=True,
            ),
            "post": op(
                "create_pool",
                "pools",
                "Create a pool",
                "201",
                envelope_of(ref("Pool")),
                body=closed(["name", "slots"], name=ID, slots=slots, description=description),
                body_required=True,
            ),
        },
        "/api/v1/pools/{name}": {
            "patch": op(
                "patch_pool",
                "pools",
                "Resize or describe a pool",
                "200",
                envelope_of(ref("Pool")),
                params=pool,
                body={**closed(slots=slots, description=description), "minProperties": 1},
                body_required=True,
            ),
            "delete": op(
                "delete_pool",
                "pools",
                "Delete a pool",
                "200",
                envelope_of(ref("PoolDeleted")),
                params=pool,
            ),
        },
        "/api/v1/import-errors": {
            "get": op(
                "list_import_errors",
                "dags",
                "DAG files that failed to load",
                "200",
                envelope_of(ref("ImportError"), listing=True),
                params=PAGE,
                get=True,
            )
        },
        "/api/v1/events": {"get": _events()},
        "/api/v1/openapi.json": {
            "get": op(
                "get_openapi",
                "health",
                "This document (OpenAPI 3.1)",
                "200",
                {"type": "object"},
                get=True,
            )
        },
    }
    for path, operations in [*run_operation_paths(run, task).items(), *backfill_paths(dag).items()]:
        paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pipeline-core REST API",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
            "contact": {"name": "pipeline-core maintainers"},
        },
        "servers": [{"url": "/"}],
        "tags": TAGS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }
