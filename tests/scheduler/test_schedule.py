import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from pipeline_core.scheduler.schedule import Schedule

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(fires, tz=BERLIN):  # type: ignore[no-untyped-def]
    return [f.astimezone(tz).strftime("%m-%d %H:%M%z") for f in fires]


def test_daily_at_six():
    s = Schedule("0 6 * * *", start_date=utc(2026, 1, 1))
    assert s.next_after(utc(2026, 5, 5, 5, 59)) == utc(2026, 5, 5, 6)
    assert s.next_after(utc(2026, 5, 5, 6)) == utc(2026, 5, 6, 6)


def test_every_fifteen_minutes():
    s = Schedule("*/15 * * * *", start_date=utc(2026, 1, 1))
    fires = list(s.fires_between(utc(2026, 5, 5, 10, 0), utc(2026, 5, 5, 11, 0)))
    assert [f.minute for f in fires] == [15, 30, 45, 0]
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize(
    ("preset", "after", "expected"),
    [
        ("@hourly", utc(2026, 5, 5, 10, 30), utc(2026, 5, 5, 11)),
        ("@daily", utc(2026, 5, 5, 10), utc(2026, 5, 6)),
        ("@weekly", utc(2026, 5, 5, 10), utc(2026, 5, 10)),  # Sunday
        ("@monthly", utc(2026, 5, 5, 10), utc(2026, 6, 1)),
        ("@yearly", utc(2026, 5, 5, 10), utc(2027, 1, 1)),
    ],
)
def test_presets(preset, after, expected):
    assert Schedule(preset, start_date=utc(2026, 1, 1)).next_after(after) == expected


def test_once_fires_at_start_date_only():
    s = Schedule("@once", start_date=utc(2026, 3, 1, 12))
    assert s.next_after(utc(2026, 1, 1)) == utc(2026, 3, 1, 12)
    assert s.next_after(utc(2026, 3, 1, 12)) is None


def test_start_and_end_dates_bound_the_fires():
    s = Schedule("0 0 * * *", start_date=utc(2026, 1, 10), end_date=utc(2026, 1, 12))
    assert list(s.fires_between(utc(2026, 1, 1), utc(2026, 2, 1))) == [
        utc(2026, 1, 10),
        utc(2026, 1, 11),
        utc(2026, 1, 12),
    ]


def test_end_of_month_and_leap_year():
    month_end = Schedule("0 0 L * *", start_date=utc(2028, 1, 1))
    assert [f.day for f in month_end.fires_between(utc(2028, 1, 1), utc(2028, 4, 1))] == [
        31,
        29,
        31,
    ]
    leap_day = Schedule("0 0 29 2 *", start_date=utc(2026, 1, 1))
    assert leap_day.next_after(utc(2026, 1, 1)) == utc(2028, 2, 29)


def test_dst_spring_forward_daily_fires_once_after_the_jump():
    s = Schedule("30 2 * * *", "Europe/Berlin", start_date=utc(2026, 1, 1))
    fires = list(s.fires_between(utc(2026, 3, 27), utc(2026, 3, 31)))
    assert local(fires) == [
        "03-27 02:30+0100",
        "03-28 02:30+0100",
        "03-29 03:30+0200",
        "03-30 02:30+0200",
    ]


def test_dst_fall_back_daily_fires_once():
    s = Schedule("30 2 * * *", "Europe/Berlin", start_date=utc(2026, 1, 1))
    fires = list(s.fires_between(utc(2026, 10, 23), utc(2026, 10, 27)))
    assert local(fires) == [
        "10-23 02:30+0200",
        "10-24 02:30+0200",
        "10-25 02:30+0200",
        "10-26 02:30+0100",
    ]


def test_dst_wildcard_hours_follow_the_real_clock():
    s = Schedule("*/30 * * * *", "Europe/Berlin", start_date=utc(2026, 1, 1))
    autumn = list(s.fires_between(utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 2, 0)))
    assert local(autumn) == [
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        "10-25 02:00+0100",
        "10-25 02:30+0100",
        "10-25 03:00+0100",
    ]
    assert [b - a for a, b in itertools.pairwise(autumn)] == [timedelta(minutes=30)] * 4
    spring = list(s.fires_between(utc(2026, 3, 29, 0, 10), utc(2026, 3, 29, 2, 0)))
    assert local(spring) == [
        "03-29 01:30+0100",
        "03-29 03:00+0200",
        "03-29 03:30+0200",
        "03-29 04:00+0200",
    ]


def test_latest_at_or_before_skips_the_walk():
    s = Schedule("0 6 * * *", start_date=utc(2020, 1, 1))
    assert s.latest_at_or_before(utc(2026, 5, 5, 7), utc(2020, 1, 1)) == utc(2026, 5, 5, 6)
    assert s.latest_at_or_before(utc(2026, 5, 5, 5), utc(2026, 5, 4, 6)) is None
