"""The OpenAPI operations of backfills."""

from __future__ import annotations

from typing import Any

from pipeline_core.api.openapi.parts import DATE_TIME, PAGE, closed, envelope_of, op, param
from pipeline_core.api.openapi.schemas import obj
from pipeline_core.store.types import BACKFILL_STATES, REPROCESS

TS = {"type": ["string", "null"], "format": "date-time"}
BRIEF: dict[str, Any] = {
    "id": {"type": "integer"},
    "dag_id": {"type": "string"},
    "from": DATE_TIME,
    "to": DATE_TIME,
    "reprocess": {"enum": list(REPROCESS)},
    "max_active_runs": {"type": "integer"},
    "state": {"enum": list(BACKFILL_STATES)},
    "created_at": DATE_TIME,
    "completed_at": TS,
    "total": {"type": "integer"},
    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
}
BACKFILL = obj(
    **BRIEF,
    dates={
        "type": "array",
        "items": obj(
            logical_date=DATE_TIME,
            run_id={"type": ["string", "null"]},
            state={"type": ["string", "null"]},
        ),
    },
)
DRY_RUN = obj(
    dry_run={"type": "boolean", "const": True},
    runs={"type": "integer"},
    dates={
        "type": "array",
        "items": obj(
            logical_date=DATE_TIME,
            action={"enum": ["run", "skip"]},
            existing_run_id={"type": ["string", "null"]},
            existing_state={"type": ["string", "null"]},
        ),
    },
)
DAGS = "/api/v1/dags/{dag_id}/backfills"


def backfill_paths(dag: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    one = [*dag, param("backfill_id", schema={"type": "integer", "minimum": 1, "maximum": 2**53})]
    create = op(
        "create_backfill",
        "runs",
        "Backfill a range of fire times (or list them: dry_run)",
        "201",
        envelope_of(BACKFILL),
        params=dag,
        body=closed(
            ["from", "to"],
            **{
                "from": {"type": "string", "format": "date-time"},
                "to": {"type": "string", "format": "date-time"},
            },
            max_active_runs={"type": "integer", "minimum": 1, "maximum": 1000},
            reprocess={"enum": list(REPROCESS)},
            dry_run={"type": "boolean"},
        ),
        body_required=True,
    )
    create["responses"]["200"] = {
        "description": "the dry run: every fire time in the range and what would happen to it",
        "content": {"application/json": {"schema": envelope_of(DRY_RUN)}},
    }
    listed = op(
        "list_backfills",
        "runs",
        "A DAG's backfills",
        "200",
        envelope_of(obj(**BRIEF), listing=True),
        params=[*dag, *PAGE, param("state", "query", {"enum": list(BACKFILL_STATES)})],
        get=True,
    )
    return {
        DAGS: {"get": listed, "post": create},
        f"{DAGS}/{{backfill_id}}": {
            "get": op(
                "get_backfill",
                "runs",
                "A backfill with each date's run",
                "200",
                envelope_of(BACKFILL),
                params=one,
                get=True,
            ),
            "delete": op(
                "cancel_backfill",
                "runs",
                "Cancel a backfill: no more runs start, its active runs are cancelled",
                "200",
                envelope_of(BACKFILL),
                params=one,
            ),
        },
    }
