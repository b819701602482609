"""Run and task statistics in SQL: aggregates and indexed percentile look-ups, no row loading.

The figures of runs that were cleaned up come from their daily roll-ups (``rollups``) and are
added to those of the runs still stored, so statistics outlive retention.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pipeline_core.model import iso
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store.sql.rollups import TaskTotals, days
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import PERCENTILES, RunStats, TaskStats, nearest_rank

FINISHED = tuple(sorted(state.value for state in FINISHED_RUN_STATES))


def _window(prefix: str, since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
    clause, params = "", []
    if since is not None:
        clause += f" AND {prefix}logical_date >= ?"
        params.append(iso(since))
    if until is not None:
        clause += f" AND {prefix}logical_date <= ?"
        params.append(iso(until))
    return clause, params


def run_stats(tx: Tx, dag_id: str, since: datetime | None, until: datetime | None) -> RunStats:
    window, params = _window("", since, until)
    rolled, day_params = days(since, until)
    by_state: Counter[str] = Counter()
    for state, count in tx.rows(
        f"SELECT state, COUNT(*) FROM dag_runs WHERE dag_id = ?{window} GROUP BY state "
        f"UNION ALL SELECT state, SUM(runs) FROM run_rollups WHERE dag_id = ?{rolled} "
        "GROUP BY state",
        [dag_id, *params, dag_id, *day_params],
    ):
        by_state[state] += int(count)
    where = f"dag_id = ? AND duration_ms IS NOT NULL{window}"  # set only once a run ended
    count, total, low, high = tx.one(
        "SELECT COUNT(*), SUM(duration_ms), MIN(duration_ms), MAX(duration_ms) "
        f"FROM dag_runs WHERE {where}",
        [dag_id, *params],
    ) or (0, None, None, None)
    kept, kept_total, kept_low, kept_high = tx.one(
        "SELECT SUM(durations), SUM(duration_sum), MIN(duration_min), MAX(duration_max) "
        f"FROM run_rollups WHERE dag_id = ?{rolled}",
        [dag_id, *day_params],
    ) or (None, None, None, None)
    stored, kept = int(count), int(kept or 0)
    durations = stored + kept
    percentiles: dict[int, int | None] = dict.fromkeys(PERCENTILES)
    for q in PERCENTILES if durations else ():
        rank = nearest_rank(durations, q)
        if kept:
            merged = (
                f"SELECT duration_ms AS d, 1 AS n FROM dag_runs WHERE {where} UNION ALL "
                f"SELECT duration_ms, runs FROM duration_rollups WHERE dag_id = ?{rolled}"
            )
            percentiles[q] = int(
                tx.scalar(
                    "SELECT d FROM (SELECT d, SUM(n) OVER (ORDER BY d ROWS UNBOUNDED PRECEDING) "
                    f"AS upto FROM ({merged}) AS m) AS r WHERE upto > ? ORDER BY d LIMIT 1",
                    [dag_id, *params, dag_id, *day_params, rank],
                )
            )
            continue
        # Walk the duration index from whichever end is nearer: p99 of 100,000 runs is the
        # 1,000th from the top, not the 99,000th from the bottom.
        order, offset = ("ASC", rank) if rank < durations // 2 else ("DESC", durations - 1 - rank)
        percentiles[q] = int(
            tx.scalar(
                f"SELECT duration_ms FROM dag_runs WHERE {where} "
                f"ORDER BY duration_ms {order} LIMIT 1 OFFSET ?",
                [dag_id, *params, offset],
            )
        )
    finished = sum(n for s, n in by_state.items() if s in FINISHED)
    lows = [int(v) for v in (low, kept_low) if v is not None]
    highs = [int(v) for v in (high, kept_high) if v is not None]
    return RunStats(
        total=sum(by_state.values()),
        by_state=dict(sorted(by_state.items())),
        success_rate=by_state.get("success", 0) / finished if finished else 0.0,
        duration_avg=(int(total or 0) + int(kept_total or 0)) / durations if durations else None,
        duration_min=min(lows) if lows else None,
        duration_max=max(highs) if highs else None,
        duration_p50=percentiles[50],
        duration_p90=percentiles[90],
        duration_p99=percentiles[99],
    )


def task_stats(
    tx: Tx, dag_id: str, since: datetime | None, until: datetime | None
) -> list[TaskStats]:
    totals: dict[str, TaskTotals] = {}
    whole = since is None and until is None
    stored = _task_totals(tx, dag_id) if whole else _task_window(tx, dag_id, since, until)
    for task_id, *figures in stored:
        totals.setdefault(task_id, TaskTotals()).add(_totals(*figures))
    rolled, day_params = days(since, until)
    for task_id, *figures in tx.rows(
        "SELECT task_id, SUM(started), SUM(duration_sum), SUM(durations), SUM(failed), "
        "SUM(retried), MAX(last_success), MAX(last_failure) FROM task_rollups "
        f"WHERE dag_id = ?{rolled} GROUP BY task_id",
        [dag_id, *day_params],
    ):
        totals.setdefault(task_id, TaskTotals()).add(_totals(*figures))
    return [_task_stats(task_id, t) for task_id, t in sorted(totals.items()) if t.started > 0]


def _task_window(
    tx: Tx, dag_id: str, since: datetime | None, until: datetime | None
) -> list[tuple[Any, ...]]:
    window, params = _window("r.", since, until)
    # With a window, walk the window's runs first (SQLite keeps CROSS JOIN's table order),
    # then reach their task instances through the run index.
    source = "task_instances ti WHERE"
    if window:
        source = (
            "dag_runs r CROSS JOIN task_instances ti "
            "WHERE ti.run_pk = r.id AND r.dag_id = ti.dag_id AND"
        )
    return tx.rows(
        "SELECT ti.task_id, COUNT(*), COALESCE(SUM(ti.duration_ms), 0), COUNT(ti.duration_ms), "
        "SUM(CASE WHEN ti.state = 'failed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN ti.try_number > 1 THEN 1 ELSE 0 END), "
        "MAX(CASE WHEN ti.state = 'success' THEN ti.end_date END), "
        "MAX(CASE WHEN ti.state = 'failed' THEN ti.end_date END) "
        f"FROM {source} ti.dag_id = ? AND ti.try_number > 0{window} "
        "GROUP BY ti.task_id",
        [dag_id, *params],
    )


def _task_totals(tx: Tx, dag_id: str) -> list[tuple[Any, ...]]:
    """The whole history from the totals the triggers keep, plus two index look-ups per task
    for its latest success and failure."""
    latest = (
        "(SELECT ti.end_date FROM task_instances ti WHERE ti.dag_id = t.dag_id "
        "AND ti.task_id = t.task_id AND ti.state = '{state}' AND ti.end_date IS NOT NULL "
        "AND ti.try_number > 0 ORDER BY ti.end_date DESC LIMIT 1)"
    )
    return tx.rows(
        "SELECT t.task_id, t.started, t.duration_sum, t.durations, t.failed, t.retried, "
        f"{latest.format(state='success')}, {latest.format(state='failed')} "
        "FROM task_totals t WHERE t.dag_id = ? AND t.started > 0",
        [dag_id],
    )


def _totals(
    started: Any, duration_sum: Any, durations: Any, failed: Any, retried: Any, ok: Any, bad: Any
) -> TaskTotals:
    return TaskTotals(
        int(started), int(duration_sum or 0), int(durations or 0), int(failed or 0),
        int(retried or 0), ok, bad,
    )  # fmt: skip


def _task_stats(task_id: str, t: TaskTotals) -> TaskStats:
    return TaskStats(
        task_id=task_id,
        runs=t.started,
        avg_duration_ms=t.duration_sum / t.durations if t.durations else None,
        failure_rate=t.failed / t.started,
        retry_rate=t.retried / t.started,
        last_success=parse_ts(t.last_success) if t.last_success else None,
        last_failure=parse_ts(t.last_failure) if t.last_failure else None,
    )
