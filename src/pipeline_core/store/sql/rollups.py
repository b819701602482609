"""Daily roll-ups: what a cleaned-up run and its task instances added to their DAG's
statistics, written in the transaction that deletes them, so the figures outlive the rows.

A roll-up is keyed by DAG and by the UTC day of the run's logical date (statistics windows
are on logical dates). Counts, sums, minimum, maximum and the latest success and failure are
kept exactly; for percentiles, each finished run's duration is kept to three significant
digits (exact below one second), which bounds the rows a day can need whatever the number of
runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline_core.model import iso
from pipeline_core.store.sql.tx import Tx

SIGNIFICANT_DIGITS = 3


def kept_duration(ms: int) -> int:
    """``ms`` to three significant digits, as a roll-up keeps it (1234 → 1230)."""
    step: int = 10 ** max(0, len(str(ms)) - SIGNIFICANT_DIGITS)
    return (ms + step // 2) // step * step


def day_of(stamp: str) -> str:
    """The UTC day (``YYYY-MM-DD``) of a stored timestamp."""
    return stamp[:10]


def days(since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    """The clause choosing the roll-up days a ``[since, until]`` window touches (a window
    that starts or ends inside a cleaned-up day counts that whole day)."""
    clause, params = "", []
    if since is not None:
        clause += " AND day >= ?"
        params.append(day_of(iso(since) or ""))
    if until is not None:
        clause += " AND day <= ?"
        params.append(day_of(iso(until) or ""))
    return clause, params


@dataclass
class TaskTotals:
    """One task's totals as ``task_totals`` and ``task_rollups`` count them."""

    started: int = 0
    duration_sum: int = 0
    durations: int = 0
    failed: int = 0
    retried: int = 0
    last_success: str | None = None
    last_failure: str | None = None

    def add(self, other: TaskTotals) -> None:
        self.started += other.started
        self.duration_sum += other.duration_sum
        self.durations += other.durations
        self.failed += other.failed
        self.retried += other.retried
        self.last_success = _later(self.last_success, other.last_success)
        self.last_failure = _later(self.last_failure, other.last_failure)

    def take(self, state: str, try_number: int, duration_ms: int | None, end: str | None) -> None:
        """Count one task instance that started."""
        self.add(
            TaskTotals(
                1,
                duration_ms or 0,
                int(duration_ms is not None),
                int(state == "failed"),
                int(try_number > 1),
                end if state == "success" else None,
                end if state == "failed" else None,
            )
        )


def _later(a: str | None, b: str | None) -> str | None:
    return b if a is None or (b is not None and b > a) else a


@dataclass
class RunTotals:
    """Runs of one state on one day: how many, and their durations' sum, count and bounds."""

    runs: int = 0
    duration_sum: int = 0
    durations: int = 0
    duration_min: int | None = None
    duration_max: int | None = None

    def take(self, duration_ms: int | None) -> None:
        self.runs += 1
        if duration_ms is None:
            return
        self.duration_sum += duration_ms
        self.durations += 1
        low, high = self.duration_min, self.duration_max
        self.duration_min = duration_ms if low is None else min(low, duration_ms)
        self.duration_max = duration_ms if high is None else max(high, duration_ms)


#: Keeps the stored value unless the new one is not NULL and ``{op}`` than it.
_KEEP = "CASE WHEN r.{0} IS NULL OR excluded.{0} {1} r.{0} THEN excluded.{0} ELSE r.{0} END"


#: A run as the clean-up reads it: primary key, DAG, logical date, state, duration.
RolledRun = tuple[int, str, str, str, int | None]


def roll_up(tx: Tx, runs: Sequence[RolledRun]) -> None:
    """Add ``runs`` and their task instances to the roll-ups (inside the deleting write)."""
    if not runs:
        return
    states: dict[tuple[str, str, str], RunTotals] = {}
    durations: Counter[tuple[str, str, int]] = Counter()
    where: dict[int, tuple[str, str]] = {}
    for pk, dag_id, logical_date, state, duration_ms in runs:
        where[pk] = (dag_id, day_of(logical_date))
        states.setdefault((dag_id, day_of(logical_date), state), RunTotals()).take(duration_ms)
        if duration_ms is not None:
            durations[(dag_id, day_of(logical_date), kept_duration(int(duration_ms)))] += 1
    tasks: dict[tuple[str, str, str], TaskTotals] = {}
    marks = ", ".join("?" for _ in where)
    for pk, task_id, state, try_number, duration_ms, end in tx.rows(
        "SELECT run_pk, task_id, state, try_number, duration_ms, end_date FROM task_instances "
        f"WHERE run_pk IN ({marks}) AND try_number > 0",
        list(where),
    ):
        key = (*where[pk], task_id)
        tasks.setdefault(key, TaskTotals()).take(state, try_number, duration_ms, end)
    tx.many(
        "INSERT INTO run_rollups AS r (dag_id, day, state, runs, duration_sum, durations, "
        "duration_min, duration_max) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (dag_id, day, state) DO UPDATE SET runs = r.runs + excluded.runs, "
        "duration_sum = r.duration_sum + excluded.duration_sum, "
        "durations = r.durations + excluded.durations, "
        f"duration_min = {_KEEP.format('duration_min', '<')}, "
        f"duration_max = {_KEEP.format('duration_max', '>')}",
        [
            (*key, t.runs, t.duration_sum, t.durations, t.duration_min, t.duration_max)
            for key, t in states.items()
        ],
    )
    tx.many(
        "INSERT INTO duration_rollups AS r (dag_id, day, duration_ms, runs) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (dag_id, day, duration_ms) DO UPDATE SET runs = r.runs + excluded.runs",
        [(*key, n) for key, n in durations.items()],
    )
    tx.many(
        "INSERT INTO task_rollups AS r (dag_id, day, task_id, started, duration_sum, durations, "
        "failed, retried, last_success, last_failure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (dag_id, day, task_id) DO UPDATE SET started = r.started + excluded.started, "
        "duration_sum = r.duration_sum + excluded.duration_sum, "
        "durations = r.durations + excluded.durations, failed = r.failed + excluded.failed, "
        "retried = r.retried + excluded.retried, "
        f"last_success = {_KEEP.format('last_success', '>')}, "
        f"last_failure = {_KEEP.format('last_failure', '>')}",
        [
            (*key, t.started, t.duration_sum, t.durations, t.failed, t.retried, t.last_success,
             t.last_failure)
            for key, t in tasks.items()
        ],
    )  # fmt: skip
