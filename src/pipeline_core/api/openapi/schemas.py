"""The component schemas of the OpenAPI document: every object the v1 API answers with."""

from __future__ import annotations

from typing import Any

from pipeline_core.events import EVENT_TYPES
from pipeline_core.model import RUN_TYPES
from pipeline_core.state import RunState, TaskState, TriggerRule

S = "#/components/schemas/"
TS = {"type": ["string", "null"], "format": "date-time"}
INT_OR_NULL = {"type": ["integer", "null"]}
NUM_OR_NULL = {"type": ["number", "null"]}
STR_OR_NULL = {"type": ["string", "null"]}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}


def ref(name: str) -> dict[str, str]:
    return {"$ref": S + name}


def obj(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    schema["required"] = required if required is not None else list(props)
    return schema


RUN_BRIEF = obj(
    run_id={"type": "string"}, state={"type": "string"}, logical_date=TS, start_date=TS, end_date=TS
)
#: What every answer about a DAG version states.
_VERSION: dict[str, Any] = {
    "dag_id": {"type": "string"},
    "version": {"type": "string"},
    "first_seen": {"type": "string", "format": "date-time"},
    "fileloc": STR_OR_NULL,
    "task_count": {"type": "integer"},
    "is_latest": {"type": "boolean"},
}

SCHEMAS: dict[str, Any] = {
    "Meta": obj(
        total={"type": "integer"},
        limit={"type": "integer"},
        offset={"type": "integer"},
        has_more={"type": "boolean"},
    ),
    "Error": obj(
        data={"type": "null"},
        error=obj(code={"type": "string"}, message={"type": "string"}, details={"type": "object"}),
    ),
    "Dag": obj(
        dag_id={"type": "string"},
        description=STR_OR_NULL,
        schedule=STR_OR_NULL,
        asset_schedule={
            "oneOf": [
                {"type": "null"},
                obj(
                    ["assets", "collapse"], assets={"type": "string"}, collapse={"type": "boolean"}
                ),
            ],
            "description": "the condition over asset URIs whose updates start runs",
        },
        timezone={"type": "string"},
        is_paused={"type": "boolean"},
        is_active={"type": "boolean"},
        tags={"type": "array", "items": {"type": "string"}},
        task_count={"type": "integer"},
        fileloc=STR_OR_NULL,
        next_run_date=TS,
        last_run={"oneOf": [{"type": "null"}, RUN_BRIEF]},
    ),
    "DagDetail": {
        "allOf": [
            ref("Dag"),
            obj(
                tasks={
                    "type": "array",
                    "items": obj(
                        task_id={"type": "string"},
                        type=STR_OR_NULL,
                        depends_on={"type": ["array", "null"], "items": {"type": "string"}},
                        trigger_rule={"enum": [*(r.value for r in TriggerRule), None]},
                        retries=INT_OR_NULL,
                        pool=STR_OR_NULL,
                        priority_weight=INT_OR_NULL,
                    ),
                },
                parse_errors={"type": "array", "items": {"type": "object"}},
                assets_waiting={
                    "type": "object",
                    "additionalProperties": {"type": "integer"},
                    "description": "updates waiting for the DAG's asset condition, by asset",
                },
                concurrency_key={
                    "type": ["object", "null"],
                    "description": "at most `limit` active runs per rendered `key`",
                    "properties": {
                        "key": {"type": "string"},
                        "limit": {"type": "integer"},
                        "on_conflict": {"enum": ["queue", "cancel_running", "skip_new"]},
                    },
                },
            ),
        ]
    },
    "Run": obj(
        dag_id={"type": "string"},
        run_id={"type": "string"},
        state={"enum": [s.value for s in RunState]},
        run_type={"enum": list(RUN_TYPES)},
        logical_date={"type": "string", "format": "date-time"},
        conf={"type": "object"},
        note=STR_OR_NULL,
        queued_at=TS,
        start_date=TS,
        end_date=TS,
        duration_ms=INT_OR_NULL,
        priority={"type": "integer"},
        dag_version=STR_OR_NULL,
    ),
    "DagVersion": obj(list(_VERSION), **_VERSION),
    "DagVersionDetail": obj(
        [*_VERSION, "source", "definition"],
        **_VERSION,
        source=STR_OR_NULL,
        definition={"type": "object"},
        diff_from={"type": "string"},
        diff={"type": "string"},
    ),
    "TaskInstance": obj(
        [
            "dag_id",
            "run_id",
            "task_id",
            "map_index",
            "state",
            "try_number",
            "max_tries",
            "start_date",
            "end_date",
            "duration_ms",
            "pool",
            "priority_weight",
            "error",
        ],
        dag_id={"type": "string"},
        run_id={"type": "string"},
        task_id={"type": "string"},
        map_index={
            "type": "integer",
            "minimum": -1,
            "description": "-1 unless this is an instance of a mapped task (0, 1, …)",
        },
        state={"enum": [s.value for s in TaskState]},
        try_number={"type": "integer"},
        max_tries={"type": "integer"},
        start_date=TS,
        end_date=TS,
        duration_ms=INT_OR_NULL,
        pool={"type": "string"},
        priority_weight={"type": "integer"},
        error=STR_OR_NULL,
        mapped={
            "description": "in a run's task list, for a mapped task once it is expanded: how "
            "many instances it has and how many are in each state",
            **obj(
                count={"type": "integer"},
                states={"type": "object", "additionalProperties": {"type": "integer"}},
            ),
        },
    ),
    "RunDetail": {
        "allOf": [ref("Run"), obj(task_instances={"type": "array", "items": ref("TaskInstance")})]
    },
    "Try": obj(
        try_number={"type": "integer"},
        start_date=TS,
        end_date=TS,
        state={"type": "string"},
        error=STR_OR_NULL,
    ),
    "TaskDetail": {
        "allOf": [ref("TaskInstance"), obj(tries={"type": "array", "items": ref("Try")})]
    },
    "XCom": obj(key={"type": "string"}, value={}, timestamp=TS, size_bytes={"type": "integer"}),
    "Log": obj(
        try_number={"type": "integer"},
        text={"type": "string"},
        offset={"type": "integer"},
        next_offset={"type": "integer"},
        size={"type": "integer"},
        truncated={"type": "boolean"},
    ),
    "Retry": obj(run=ref("Run"), requeued_task_ids={"type": "array", "items": {"type": "string"}}),
    "Pool": obj(
        name={"type": "string"},
        slots={"type": "integer"},
        description=STR_OR_NULL,
        rate=STR_OR_NULL,
        burst={"type": "integer"},
        running_slots={"type": "integer"},
        queued_slots={"type": "integer"},
        open_slots={"type": "integer"},
    ),
    "PoolDeleted": obj(name={"type": "string"}, deleted={"type": "boolean"}),
    "Asset": obj(
        uri={"type": "string"},
        updates={"type": "integer"},
        last_update=TS,
        producers={"type": "array", "items": {"type": "string"}, "description": "dag.task"},
        consumers={"type": "array", "items": {"type": "string"}, "description": "DAG ids"},
    ),
    "AssetUpdate": obj(
        id={"type": "integer", "description": "the seq of its asset.updated event"},
        uri={"type": "string"},
        extra={"type": "object"},
        source={
            "oneOf": [
                {"type": "null"},
                obj(
                    dag_id={"type": "string"},
                    run_id={"type": "string"},
                    task_id={"type": "string"},
                    map_index=INT_OR_NULL,
                ),
            ],
            "description": "the task whose success made it (null: posted from outside)",
        },
        timestamp=TS,
    ),
    "Notification": obj(
        # payload and history: in the answer about one notification, not in lists
        [
            "id",
            "seq",
            "event",
            "dag_id",
            "run_id",
            "task_id",
            "try_number",
            "rule",
            "target",
            "state",
            "attempts",
            "last_error",
            "last_status",
            "created_at",
            "next_attempt_at",
            "delivered_at",
        ],
        id={"type": "string", "description": "the delivery id every attempt carries"},
        seq={"type": "integer", "description": "the event that caused it"},
        event={"type": "string"},
        dag_id={"type": "string"},
        run_id=STR_OR_NULL,
        task_id=STR_OR_NULL,
        try_number=INT_OR_NULL,
        rule={"type": "string", "description": "the rule, as the DAG file names it"},
        target=obj(["kind"], kind={"type": "string"}, url=STR_OR_NULL, to={}, ref=STR_OR_NULL),
        state={"enum": ["pending", "delivered", "failed"]},
        attempts={"type": "integer"},
        last_error=STR_OR_NULL,
        last_status=INT_OR_NULL,
        created_at=TS,
        next_attempt_at=TS,
        delivered_at=TS,
        payload={"type": "object", "description": "what every attempt sends"},
        history={
            "type": "array",
            "items": obj(
                number={"type": "integer"},
                at=TS,
                status=INT_OR_NULL,
                error=STR_OR_NULL,
                duration_ms={"type": "integer"},
            ),
        },
    ),
    "Stats": obj(
        dag_id={"type": "string"},
        since=TS,
        until=TS,
        runs=obj(
            total={"type": "integer"},
            by_state={"type": "object", "additionalProperties": {"type": "integer"}},
            success_rate={"type": "number"},
            duration_ms=obj(
                avg=NUM_OR_NULL,
                min=INT_OR_NULL,
                max=INT_OR_NULL,
                p50=INT_OR_NULL,
                p90=INT_OR_NULL,
                p99=INT_OR_NULL,
            ),
        ),
        tasks={
            "type": "array",
            "items": obj(
                task_id={"type": "string"},
                runs={"type": "integer"},
                avg_duration_ms=NUM_OR_NULL,
                failure_rate={"type": "number"},
                retry_rate={"type": "number"},
                last_success=TS,
                last_failure=TS,
            ),
        },
    ),
    "Metrics": obj(
        counters={"type": "array", "items": ref("Sample")},
        gauges={"type": "array", "items": ref("Sample")},
        histograms={"type": "array", "items": ref("HistogramSample")},
    ),
    "Sample": obj(name={"type": "string"}, labels=LABELS, value={"type": "number"}),
    "HistogramSample": obj(
        name={"type": "string"},
        labels=LABELS,
        count={"type": "integer"},
        sum={"type": "number"},
        min=NUM_OR_NULL,
        max=NUM_OR_NULL,
        buckets={"type": "object", "additionalProperties": {"type": "integer"}},
        p50=NUM_OR_NULL,
        p90=NUM_OR_NULL,
        p99=NUM_OR_NULL,
    ),
    "Event": {
        **obj(
            ["seq", "type", "timestamp"],
            seq={"type": "integer", "minimum": 1},
            type={"enum": list(EVENT_TYPES)},
            timestamp={"type": "string", "format": "date-time"},
            dag_id=STR_OR_NULL,
            run_id=STR_OR_NULL,
            task_id=STR_OR_NULL,
        ),
        "description": "One entry of the event log; the other fields depend on its type "
        "(previous_state and new_state for state changes, try_number for tasks)",
    },
    "Health": obj(
        status={"enum": ["healthy", "degraded", "unhealthy"]},
        scheduler=obj(
            status={"enum": ["running", "stopped", "absent"]},
            last_heartbeat=TS,
            heartbeat_age_s=NUM_OR_NULL,
        ),
        store=obj(status={"enum": ["ok", "error"]}),
        instances={
            "type": "array",
            "items": obj(
                id={"type": "string"},
                kind={"type": "string"},
                role={"enum": ["active", "standby", "stopped"]},
                hostname={"type": "string"},
                pid={"type": "integer"},
                last_heartbeat={"type": "string", "format": "date-time"},
                heartbeat_age_s={"type": "number"},
            ),
            "description": "every engine, scheduler and standby scheduler that heartbeats",
        },
        workers={
            "type": "array",
            "items": obj(
                id={"type": "string"},
                kind={"type": "string", "const": "worker"},
                role={"enum": ["active", "stopped"]},
                hostname={"type": "string"},
                pid={"type": "integer"},
                last_heartbeat={"type": "string", "format": "date-time"},
                heartbeat_age_s={"type": "number"},
                running={
                    "type": "array",
                    "items": obj(
                        dag_id={"type": "string"},
                        run_id={"type": "string"},
                        task_id={"type": "string"},
                        try_number={"type": "integer"},
                    ),
                },
            ),
            "description": "every Celery worker (pipeline-core worker) that heartbeats, with "
            "the tries it runs",
        },
        reasons={"type": "array", "items": {"type": "string"}},
        uptime_s={"type": "number"},
    ),
    "Version": obj(
        api_version={"type": "string", "const": "v1"},
        version={"type": "string"},
        python_version={"type": "string"},
    ),
    "ImportError": obj(
        filename={"type": "string"},
        errors={"type": "array", "items": {"type": "object"}},
        seen_at=TS,
    ),
}
