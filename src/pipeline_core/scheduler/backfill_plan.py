"""Which logical dates a backfill runs. Pure: the schedule, the range and the runs that
exist in it in; the dates, each with what happens to it, out.

A backfill covers the DAG's fire times ``t`` with ``start <= t <= end``, in its timezone and
with its DST rules (``scheduler.schedule``). ``reprocess`` says what to do with a date that
has a run already: ``none`` skips it, ``failed`` runs it again when its newest run failed,
``all`` runs every date again. Dates run again get a new ``backfill`` run; the old runs stay
in the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pipeline_core.errors import Conflict, InvalidRequest
from pipeline_core.model import DagRun, iso
from pipeline_core.scheduler.schedule import Schedule
from pipeline_core.state import RunState

DEFAULT_MAX_RUNS = 1000
RUN, SKIP = "run", "skip"


@dataclass(frozen=True, slots=True)
class PlannedDate:
    logical_date: datetime
    action: str  # RUN or SKIP
    #: The newest run the date has already, if any.
    existing: DagRun | None = None


def plan_backfill(
    schedule: Schedule | None,
    start: datetime,
    end: datetime,
    reprocess: str,
    existing: Mapping[datetime, DagRun],
    *,
    max_runs: int = DEFAULT_MAX_RUNS,
    dag_id: str = "",
) -> list[PlannedDate]:
    """The range's fire times with their action. ``Conflict`` for a DAG without a cron
    schedule (the DAG, not the request, is what stands in the way); ``InvalidRequest`` for
    a reversed range, or a range of more than ``max_runs`` fire times."""
    if schedule is None or schedule.cron is None:
        raise Conflict(
            f"DAG '{dag_id}' has no cron schedule to backfill: trigger runs with a logical date"
        )
    if start > end:
        raise InvalidRequest(f"the range is reversed: 'from' {iso(start)} is after 'to' {iso(end)}")
    planned: list[PlannedDate] = []
    unbounded = Schedule(schedule.expression, schedule.timezone)  # the range bounds it
    for fire in unbounded.fires_between(start, end, inclusive=True):
        run = existing.get(fire)
        again = run is None or reprocess == "all"
        if reprocess == "failed" and run is not None:
            again = run.state is RunState.FAILED
        planned.append(PlannedDate(fire, RUN if again else SKIP, run))
        if len(planned) > max_runs:
            raise InvalidRequest(
                f"the range has more than {max_runs} fire times; narrow it, or raise the "
                "server's --max-backfill-runs"
            )
    return planned
