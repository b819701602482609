"""When a DAG fires: cron expressions and presets in the DAG's timezone. Pure.

DST rules (checked by the tests for Europe/Berlin):

* An expression with a fixed hour (``30 2 * * *``) fires once per matching local day. A
  time that the autumn change repeats fires at its first occurrence only; a time that the
  spring change skips fires at the same offset after the jump (02:30 → 03:30).
* An expression whose hour is a wildcard (``*/15 * * * *``, ``@hourly``) follows the real
  clock: every matching minute of both repeated hours in autumn, and none of the skipped
  hour in spring.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from pipeline_core.dag.model import DAG
from pipeline_core.dag.validation import SCHEDULE_PRESETS

_TINY = timedelta(microseconds=1)


@dataclass(frozen=True)
class Schedule:
    """A DAG's schedule: ``expression`` is a 5-field cron, a preset, or ``@once``."""

    expression: str
    timezone: str = "UTC"
    start_date: datetime | None = None
    end_date: datetime | None = None

    @classmethod
    def of(cls, dag: DAG) -> Schedule | None:
        if dag.schedule is None:
            return None
        return cls(dag.schedule, dag.timezone, dag.start_date, dag.end_date)

    @property
    def cron(self) -> str | None:
        """The cron expression (``None`` for ``@once``)."""
        return SCHEDULE_PRESETS.get(self.expression, self.expression)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first fire time strictly after ``moment`` (UTC), or ``None`` if there is none."""
        for fire in self._fires(moment):
            return fire
        return None

    def fires_between(
        self, after: datetime, until: datetime, *, inclusive: bool = False
    ) -> Iterator[datetime]:
        """Fire times ``t`` with ``after < t <= until`` (``after <= t`` when ``inclusive``),
        oldest first."""
        if inclusive:  # fire times are whole seconds: t >= after <=> t > ceil(after) - 1 s
            ceiling = after + timedelta(microseconds=-after.microsecond % 1_000_000)
            after = ceiling - timedelta(seconds=1)
        for fire in self._fires(after):
            if fire > until:
                return
            yield fire

    def latest_at_or_before(self, moment: datetime, after: datetime) -> datetime | None:
        """The newest fire time in ``(after, moment]``, found without walking the ones between
        (a scheduler that slept for months must not step through every missed minute)."""
        cron = self.cron
        if cron is None:
            start = self.start_date
            return start if start is not None and after < start <= moment else None
        tz = ZoneInfo(self.timezone)
        probe = moment + timedelta(seconds=1)  # croniter's get_prev excludes its start
        try:
            if self._hour_is_wildcard(cron):
                candidate = croniter(cron, probe.astimezone(tz)).get_prev(datetime)
                candidate = candidate.astimezone(UTC)
            else:
                it = croniter(cron, probe.astimezone(tz).replace(tzinfo=None))
                candidate = _localize(it.get_prev(datetime), tz)
                while candidate > moment:  # a wall-clock time DST moved past ``moment``
                    candidate = _localize(it.get_prev(datetime), tz)
        except (OverflowError, ValueError):  # no fire time in year 1 or before
            return None
        if self.start_date is not None and candidate < self.start_date:
            return None
        if candidate <= after or self._bounded(candidate) is None:
            return None
        return candidate

    def _fires(self, after: datetime) -> Iterator[datetime]:
        start = self.start_date
        if start is not None and after < start:
            after = start - _TINY
        cron = self.cron
        if cron is None:  # @once: at start_date (or never without one)
            if start is not None and start > after and self._bounded(start):
                yield start
            return
        tz = ZoneInfo(self.timezone)
        raw = (
            self._wall_clock(cron, tz, after)
            if not self._hour_is_wildcard(cron)
            else self._real_clock(cron, tz, after)
        )
        try:
            for fire in raw:
                if self.end_date is not None and fire > self.end_date:
                    return
                yield fire
        except (OverflowError, ValueError):  # the next fire time is past year 9999: none
            return

    @staticmethod
    def _hour_is_wildcard(cron: str) -> bool:
        hour = cron.split()[1]
        return hour == "*" or hour.startswith("*/")

    @staticmethod
    def _real_clock(cron: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
        it = croniter(cron, after.astimezone(tz))
        while True:
            yield it.get_next(datetime).astimezone(UTC)

    @staticmethod
    def _wall_clock(cron: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
        it = croniter(cron, after.astimezone(tz).replace(tzinfo=None))
        last = after
        while True:
            fire = _localize(it.get_next(datetime), tz)
            if fire > last:
                last = fire
                yield fire

    def _bounded(self, fire: datetime) -> datetime | None:
        if self.end_date is not None and fire > self.end_date:
            return None
        return fire


def _localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """Local wall-clock time → UTC, first occurrence for repeated times (PEP 495 fold=0)."""
    return naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
