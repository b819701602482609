"""``/dags``: list, get and pause/unpause DAGs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pipeline_core.api.cache import ViewCache
from pipeline_core.api.http import Request, Response, envelope, listing
from pipeline_core.api.openapi.operation import DAG, PAGE, Operation, Param
from pipeline_core.api.openapi.parts import closed, envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.params import page
from pipeline_core.clock import Clock
from pipeline_core.dag.model import parse_datetime
from pipeline_core.model import DagRun, iso
from pipeline_core.scheduler.schedule import Schedule
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord

LIST = Operation(
    "list_dags",
    "dags",
    "List DAGs",
    "Every DAG with its newest run and next fire time, filtered by tags, pause state, an "
    "id pattern or a search of ids and descriptions (q), a page at a time.",
    envelope_of(ref("Dag"), listing=True),
    (
        *PAGE,
        Param("tags", schema={"type": "array", "items": {"type": "string"}}),
        Param("is_paused", schema={"type": "boolean"}),
        Param("dag_id_pattern", description="a part of dag_id (any case)"),
        Param(
            "q",
            schema={"type": "string", "maxLength": 200},
            description="a part of dag_id or of the description (any case)",
        ),
    ),
    read=True,
    scope="filtered",
)
GET = Operation(
    "get_dag",
    "dags",
    "A DAG with its tasks",
    "A DAG's settings and its tasks with their dependencies.",
    envelope_of(ref("DagDetail")),
    DAG,
    read=True,
)
PATCH = Operation(
    "patch_dag",
    "dags",
    "Pause or unpause a DAG",
    "Pause a DAG (no new runs start; queued ones wait) or unpause it.",
    envelope_of(ref("Dag")),
    DAG,
    body=closed(["is_paused"], is_paused={"type": "boolean"}),
    body_required=True,
    example={"is_paused": True},
)
IMPORT_ERRORS = Operation(
    "list_import_errors",
    "dags",
    "DAG files that failed to load",
    "DAG files that failed to load, with each error's line and message.",
    envelope_of(ref("ImportError"), listing=True),
    PAGE,
    read=True,
)


def dag_summary(record: DagRecord, last: DagRun | None, now: datetime) -> dict[str, Any]:
    """A DAG as listed at ``now``: its record, next scheduled run and newest run."""
    return {
        "dag_id": record.dag_id,
        "description": record.description,
        "schedule": record.schedule,
        "asset_schedule": (record.definition or {}).get("assets"),
        "timezone": record.timezone,
        "is_paused": record.is_paused,
        "is_active": record.is_active,
        "tags": list(record.tags),
        "task_count": record.task_count,
        "fileloc": record.fileloc,
        "next_run_date": iso(next_run_date(record, now)),
        "last_run": _run_brief(last) if last is not None else None,
    }


def _latest(store: Store, record: DagRecord) -> DagRun | None:
    return store.runs.latest_runs([record.dag_id]).get(record.dag_id)


_NEXT_FIRES: dict[tuple[str, str, str | None, str | None], datetime | None] = {}


def next_run_date(record: DagRecord, now: datetime) -> datetime | None:
    """When the schedule fires next after ``now`` (``None`` when unscheduled, paused or inactive).

    A record has its bounds whether read alone or listed (a listing carries that part of the
    definition). Cached per schedule and bounds until that moment passes, so listing DAGs
    does no cron arithmetic for DAGs scheduled alike."""
    if record.schedule is None or record.is_paused or not record.is_active:
        return None
    definition = record.definition or {}
    start, end = definition.get("start_date"), definition.get("end_date")
    key = (record.schedule, record.timezone, start, end)
    cached = _NEXT_FIRES.get(key)
    if cached is not None and cached > now:
        return cached
    schedule = Schedule(
        record.schedule,
        record.timezone,
        parse_datetime(start) if start else None,
        parse_datetime(end) if end else None,
    )
    _NEXT_FIRES[key] = fire = schedule.next_after(now)
    return fire


def _run_brief(run: DagRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": run.state.value,
        "logical_date": iso(run.logical_date),
        "start_date": iso(run.start_date),
        "end_date": iso(run.end_date),
    }


def _listing_key(request: Request) -> str:
    scope = request.account.dags_tag if request.account is not None else None
    return f"dags?{request.query_string}" + (f"#{scope}" if scope is not None else "")


def listed_dags_from_memory(cache: ViewCache) -> Callable[[Request], Response | None]:
    return lambda request: cache.peek(_listing_key(request))


def list_dags(store: Store, cache: ViewCache, clock: Clock) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        return cache.get_or_render(_listing_key(request), lambda: render(request))

    def render(request: Request) -> tuple[Response, datetime | None]:
        limit, offset = page(request)
        found = store.dags.list_dags(
            tags=request.args.get("tags", []),
            is_paused=request.args.get("is_paused"),
            dag_id_pattern=request.args.get("dag_id_pattern"),
            search=request.args.get("q"),
            limit=limit,
            offset=offset,
            within_tag=request.account.dags_tag if request.account is not None else None,
        )
        latest = store.runs.latest_runs([record.dag_id for record in found.items])
        now = clock.now()
        data = [dag_summary(r, latest.get(r.dag_id), now) for r in found.items]
        fires = [next_run_date(r, now) for r in found.items]
        soonest = min((f for f in fires if f is not None), default=None)
        return listing(data, found.total, limit, offset), soonest

    return handle


def get_dag(store: Store, clock: Clock) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        record = store.dags.get_dag(request.params["dag_id"])
        definition = record.definition or {}
        tasks = [
            {
                k: t.get(k)
                for k in (
                    "task_id",
                    "type",
                    "depends_on",
                    "trigger_rule",
                    "retries",
                    "pool",
                    "priority_weight",
                )
            }
            for t in definition.get("tasks", [])
        ]
        errors = [e for e in store.dags.list_import_errors() if e.filename == record.fileloc]
        parse_errors = [dict(issue) for e in errors for issue in e.issues]
        waiting: dict[str, int] = {}
        if definition.get("assets"):
            for update in store.assets.waiting(record.dag_id):
                waiting[update.uri] = waiting.get(update.uri, 0) + 1
        return envelope(
            {
                **dag_summary(record, _latest(store, record), clock.now()),
                "tasks": tasks,
                "assets_waiting": waiting,
                "parse_errors": parse_errors,
                "concurrency_key": definition.get("concurrency_key"),
            }
        )

    return handle


def import_errors(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        errors = store.dags.list_import_errors()
        data = [
            {
                "filename": e.filename,
                "errors": [dict(i) for i in e.issues],
                "seen_at": iso(e.seen_at),
            }
            for e in errors[offset : offset + limit]
        ]
        return listing(data, len(errors), limit, offset)

    return handle


def patch_dag(
    store: Store, on_pause: Callable[[str, bool], DagRecord] | None, clock: Clock
) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        dag_id, paused = request.params["dag_id"], request.fields["is_paused"]
        store.dags.get_dag(dag_id)
        record = on_pause(dag_id, paused) if on_pause else store.dags.set_paused(dag_id, paused)
        return envelope(dag_summary(record, _latest(store, record), clock.now()))

    return handle
