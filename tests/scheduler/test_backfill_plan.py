"""Which dates a backfill runs: fire times in the range, DST, reprocess, and the limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline_core.dag.model import EARLIEST, LATEST
from pipeline_core.errors import Conflict, InvalidRequest
from pipeline_core.model import DagRun
from pipeline_core.scheduler.backfill_plan import RUN, SKIP, plan_backfill
from pipeline_core.scheduler.schedule import Schedule
from pipeline_core.state import RunState

BERLIN = Schedule("30 2 * * *", "Europe/Berlin")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def test_a_range_across_the_spring_change_keeps_the_local_time_or_moves_past_the_gap():
    planned = plan_backfill(BERLIN, utc(2026, 3, 27), utc(2026, 3, 31), "none", {})
    assert [p.logical_date for p in planned] == [
        utc(2026, 3, 27, 1, 30),  # 02:30 CET
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),  # 02:30 does not exist: 03:30 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]
    autumn = plan_backfill(BERLIN, utc(2026, 10, 24), utc(2026, 10, 27), "none", {})
    # 02:30 CEST; on the 25th 02:30 comes twice and fires at its first (CEST); then CET
    assert [p.logical_date.hour for p in autumn] == [0, 0, 1]


def test_both_ends_are_inclusive():
    hourly = Schedule("0 * * * *")
    planned = plan_backfill(hourly, utc(2026, 1, 1, 1), utc(2026, 1, 1, 3), "none", {})
    assert [p.logical_date.hour for p in planned] == [1, 2, 3]


def _run(day: int, state: RunState) -> DagRun:
    date = utc(2026, 1, day, 6)
    return DagRun("d", f"r{day}", state, "scheduled", date)


def test_reprocess_decides_what_happens_to_dates_with_runs():
    daily = Schedule("0 6 * * *")
    existing = {r.logical_date: r for r in (_run(1, RunState.SUCCESS), _run(2, RunState.FAILED))}

    def actions(reprocess: str) -> list[str]:
        planned = plan_backfill(daily, utc(2026, 1, 1), utc(2026, 1, 3, 23), reprocess, existing)
        return [p.action for p in planned]

    assert actions("none") == [SKIP, SKIP, RUN]
    assert actions("failed") == [SKIP, RUN, RUN]
    assert actions("all") == [RUN, RUN, RUN]
    planned = plan_backfill(daily, utc(2026, 1, 1), utc(2026, 1, 1, 23), "none", existing)
    assert planned[0].existing is existing[utc(2026, 1, 1, 6)]


@pytest.mark.parametrize(
    ("schedule", "start", "end", "error", "message"),
    [
        (None, utc(2026, 1, 1), utc(2026, 1, 2), Conflict, "no cron schedule"),
        (Schedule("@once"), utc(2026, 1, 1), utc(2026, 1, 2), Conflict, "no cron schedule"),
        (Schedule("@daily"), utc(2026, 1, 2), utc(2026, 1, 1), InvalidRequest, "is reversed"),
        (
            Schedule("* * * * *"),
            utc(2026, 1, 1),
            utc(2026, 1, 2),
            InvalidRequest,
            "more than 1000 fire times",
        ),
    ],
)
def test_refusals(schedule, start, end, error, message):  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        plan_backfill(schedule, start, end, "none", {}, dag_id="d")


def test_the_cap_is_configurable():
    daily = Schedule("@daily")
    assert (
        len(plan_backfill(daily, utc(2026, 1, 1), utc(2026, 1, 10), "none", {}, max_runs=10)) == 10
    )
    with pytest.raises(InvalidRequest, match="more than 9"):
        plan_backfill(daily, utc(2026, 1, 1), utc(2026, 1, 10), "none", {}, max_runs=9)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Pacific/Kiritimati"])
@pytest.mark.parametrize("cron", ["@yearly", "0 6 * * *", "*/15 * * * *"])
def test_ranges_at_the_ends_of_the_supported_range_plan_without_overflow(zone, cron):
    schedule = Schedule(cron, zone)
    first = plan_backfill(schedule, EARLIEST, utc(1, 1, 3), "none", {})
    assert all(EARLIEST <= p.logical_date <= utc(1, 1, 3) for p in first)
    last = plan_backfill(schedule, utc(9999, 12, 30, 12), LATEST, "none", {})
    assert all(p.logical_date <= LATEST for p in last)
    if cron == "*/15 * * * *":
        assert first and last[-1].logical_date == utc(9999, 12, 30, 23, 45)
    latest = schedule.latest_at_or_before(EARLIEST, EARLIEST - timedelta(days=1))
    assert latest is None or latest <= EARLIEST


def test_the_first_supported_instant_is_planned_when_it_is_a_fire_time():
    planned = plan_backfill(Schedule("0 0 * * *"), EARLIEST, utc(1, 1, 3), "none", {})
    assert [p.logical_date for p in planned] == [EARLIEST, utc(1, 1, 3)]
