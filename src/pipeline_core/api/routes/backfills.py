"""``/dags/:dag_id/backfills``: runs for a range of past fire times, with a dry run that only
lists them; the scheduler makes the runs, ``max_active_runs`` at a time."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from pipeline_core.api.http import Request, Response, bad_request, envelope, listing
from pipeline_core.api.openapi.operation import DAG, PAGE, Answer, Operation, Param
from pipeline_core.api.openapi.parts import DATE_TIME, MAX_INTEGER, closed, envelope_of
from pipeline_core.api.openapi.schemas import obj
from pipeline_core.api.params import page
from pipeline_core.dag.model import LATEST, parse_datetime
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import DagRun, iso
from pipeline_core.scheduler.backfill_plan import RUN, plan_backfill
from pipeline_core.scheduler.backfills import cancel_active
from pipeline_core.scheduler.schedule import Schedule
from pipeline_core.store.base import Store
from pipeline_core.store.types import BACKFILL_STATES, REPROCESS, Backfill, RunQuery

_PLAIN_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DEFAULT_ACTIVE = 10

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
#: A range's end: a date-time, or a plain date (a whole day in the DAG's timezone).
MOMENT = {
    "type": "string",
    "anyOf": [{"format": "date-time"}, {"format": "date"}],
    "description": "an ISO 8601 date or date-time",
}
ONE = (
    *DAG,
    Param("backfill_id", "path", {"type": "integer", "minimum": 1, "maximum": MAX_INTEGER}),
)

CREATE = Operation(
    "create_backfill",
    "runs",
    "Backfill a range of fire times (or list them: dry_run)",
    "Create backfill runs for the DAG's fire times from 'from' to 'to' (plain dates cover "
    "whole days in the DAG's timezone). reprocess: none skips dates that have a run, failed "
    "runs again the ones whose newest run failed, all runs every date. The scheduler starts "
    "them max_active_runs at a time. dry_run lists the dates and what would happen to each "
    "(200), creating nothing. At most --max-backfill-runs fire times; a range with no fire "
    "time of the DAG's schedule is a 400; a DAG without a cron schedule is a 409.",
    envelope_of(BACKFILL),
    DAG,
    body=closed(
        ["from", "to"],
        **{"from": MOMENT, "to": MOMENT},
        max_active_runs={"type": "integer", "minimum": 1, "maximum": 1000},
        reprocess={"enum": list(REPROCESS)},
        dry_run={"type": "boolean"},
    ),
    body_required=True,
    example={"from": "2026-01-01", "to": "2026-01-31", "reprocess": "failed", "dry_run": True},
    created=True,
    answers=[
        Answer(
            "200",
            "the dry run: every fire time in the range and what would happen to it",
            envelope_of(DRY_RUN),
        )
    ],
)
LIST = Operation(
    "list_backfills",
    "runs",
    "A DAG's backfills",
    "A DAG's backfills, oldest first, with their run counts by state.",
    envelope_of(obj(**BRIEF), listing=True),
    (*DAG, *PAGE, Param("state", schema={"enum": list(BACKFILL_STATES)})),
    read=True,
)
GET = Operation(
    "get_backfill",
    "runs",
    "A backfill with each date's run",
    "A backfill with every date's run and its state.",
    envelope_of(BACKFILL),
    ONE,
    read=True,
)
CANCEL = Operation(
    "cancel_backfill",
    "runs",
    "Cancel a backfill: no more runs start, its active runs are cancelled",
    "Cancel a running backfill: dates without a run get none, and its queued and running "
    "runs are cancelled.",
    envelope_of(BACKFILL),
    ONE,
)


def create_backfill(store: Store, max_runs: int) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.fields
        record = store.dags.get_dag(request.params["dag_id"])
        zone = ZoneInfo(record.timezone)
        start, end = _date(body, "from", zone), _date(body, "to", zone, end_of_day=True)
        reprocess = body.get("reprocess", "none")
        active = int(body.get("max_active_runs", DEFAULT_ACTIVE))
        dry_run = body.get("dry_run", False)
        schedule = Schedule(record.schedule, record.timezone) if record.schedule else None
        planned = plan_backfill(
            schedule,
            start,
            end,
            reprocess,
            _runs_between(store, record.dag_id, start, end),
            max_runs=max_runs,
            dag_id=record.dag_id,
        )
        dates = [p.logical_date for p in planned if p.action == RUN]
        if dry_run:
            listed = [
                {
                    "logical_date": iso(p.logical_date),
                    "action": p.action,
                    "existing_run_id": p.existing.run_id if p.existing else None,
                    "existing_state": p.existing.state.value if p.existing else None,
                }
                for p in planned
            ]
            return envelope({"dry_run": True, "runs": len(dates), "dates": listed})
        if not planned:
            raise bad_request(
                f"the range {iso(start)} to {iso(end)} holds no fire time of the DAG's "
                f"schedule {record.schedule!r}"
            )
        if not dates:
            raise Conflict(
                f"no date in the range needs a run (reprocess={reprocess}: "
                f"{len(planned)} fire time(s), each with a run already)"
            )
        backfill = store.backfills.create_backfill(
            record.dag_id, start, end, reprocess=reprocess, max_active_runs=active, dates=dates
        )
        location = f"/api/v1/dags/{quote(record.dag_id)}/backfills/{backfill.id}"
        return envelope(backfill_dict(backfill), status=201, headers={"Location": location})

    return handle


def list_backfills(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        state = request.args.get("state")
        dag_id = request.params["dag_id"]
        store.dags.get_dag(dag_id)
        found = store.backfills.list_backfills(dag_id, state)
        shown = [backfill_dict(b, dates=False) for b in found[offset : offset + limit]]
        return listing(shown, len(found), limit, offset)

    return handle


def get_backfill(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        return envelope(backfill_dict(_backfill(store, request)))

    return handle


def cancel_backfill(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        backfill = _backfill(store, request)
        store.backfills.end_backfill(backfill.id, "cancelled")
        if control is not None:
            cancel_active(store, control, backfill.id)
        return envelope(backfill_dict(store.backfills.get_backfill(backfill.id)))

    return handle


def backfill_dict(backfill: Backfill, *, dates: bool = True) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for each in backfill.dates:
        state = each.run_state or "waiting"
        counts[state] = counts.get(state, 0) + 1
    answer: dict[str, Any] = {
        "id": backfill.id,
        "dag_id": backfill.dag_id,
        "from": iso(backfill.from_date),
        "to": iso(backfill.to_date),
        "reprocess": backfill.reprocess,
        "max_active_runs": backfill.max_active_runs,
        "state": backfill.state,
        "created_at": iso(backfill.created_at),
        "completed_at": iso(backfill.completed_at),
        "total": len(backfill.dates),
        "counts": counts,
    }
    if dates:
        answer["dates"] = [
            {"logical_date": iso(d.logical_date), "run_id": d.run_id, "state": d.run_state}
            for d in backfill.dates
        ]
    return answer


def _backfill(store: Store, request: Request) -> Backfill:
    backfill_id = request.args["backfill_id"]
    backfill = store.backfills.get_backfill(backfill_id)
    if backfill.dag_id != request.params["dag_id"]:
        store.dags.get_dag(request.params["dag_id"])
        raise NotFound(f"DAG '{request.params['dag_id']}' has no backfill {backfill_id}")
    return backfill


def _runs_between(
    store: Store, dag_id: str, start: datetime, end: datetime
) -> dict[datetime, DagRun]:
    """The newest run of each logical date in the range."""
    runs: dict[datetime, DagRun] = {}
    offset = 0
    while True:
        found = store.runs.query_runs(
            RunQuery(
                dag_id=dag_id,
                logical_date_gte=start,
                logical_date_lte=end,
                order_by="logical_date",
                limit=1000,
                offset=offset,
            )
        )
        for run in found.items:
            runs[run.logical_date] = run
        offset += len(found.items)
        if not found.items or offset >= found.total:
            return runs


def _date(body: dict[str, Any], name: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime:
    """A date-time (naive ones in the DAG's timezone); a plain date is the start of that
    day, or for ``to`` its end, so a range of dates covers whole days."""
    value = body[name]
    try:
        if end_of_day and _PLAIN_DATE.fullmatch(value.strip()):
            parse_datetime(value, zone)  # the day itself must be in the supported range
            day = date.fromisoformat(value.strip())
            try:
                next_day = parse_datetime((day + timedelta(days=1)).isoformat(), zone)
                return next_day - timedelta(microseconds=1)
            except (ValueError, OverflowError):  # the day ends past the range: up to its end
                return LATEST
        return parse_datetime(value, zone)
    except ValueError as exc:
        raise bad_request(f"'{name}': {exc}") from None
