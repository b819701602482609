"""Run and task statistics in SQL: aggregates and indexed percentile look-ups, no row loading."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipeline_core.model import iso
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import PERCENTILES, RunStats, TaskStats, nearest_rank


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
    by_state = {
        state: int(count)
        for state, count in tx.rows(
            f"SELECT state, COUNT(*) FROM dag_runs WHERE dag_id = ?{window} GROUP BY state",
            [dag_id, *params],
        )
    }
    where = f"dag_id = ? AND duration_ms IS NOT NULL{window}"  # set only once a run ended
    count, avg, low, high = tx.one(
        "SELECT COUNT(*), AVG(duration_ms), MIN(duration_ms), MAX(duration_ms) "
        f"FROM dag_runs WHERE {where}",
        [dag_id, *params],
    ) or (0, None, None, None)
    count = int(count)
    percentiles: dict[int, int | None] = dict.fromkeys(PERCENTILES)
    for q in PERCENTILES if count else ():
        # Walk the duration index from whichever end is nearer: p99 of 100,000 runs is the
        # 1,000th from the top, not the 99,000th from the bottom.
        rank = nearest_rank(count, q)
        order, offset = ("ASC", rank) if rank < count // 2 else ("DESC", count - 1 - rank)
        percentiles[q] = int(
            tx.scalar(
                f"SELECT duration_ms FROM dag_runs WHERE {where} "
                f"ORDER BY duration_ms {order} LIMIT 1 OFFSET ?",
                [dag_id, *params, offset],
            )
        )
    finished = sum(n for s, n in by_state.items() if s in ("success", "failed", "cancelled"))
    return RunStats(
        total=sum(by_state.values()),
        by_state=by_state,
        success_rate=by_state.get("success", 0) / finished if finished else 0.0,
        duration_avg=float(avg) if avg is not None else None,
        duration_min=int(low) if low is not None else None,
        duration_max=int(high) if high is not None else None,
        duration_p50=percentiles[50],
        duration_p90=percentiles[90],
        duration_p99=percentiles[99],
    )


def task_stats(
    tx: Tx, dag_id: str, since: datetime | None, until: datetime | None
) -> list[TaskStats]:
    if since is None and until is None:
        return _task_totals(tx, dag_id)
    window, params = _window("r.", since, until)
    # With a window, walk the window's runs first (SQLite keeps CROSS JOIN's table order),
    # then reach their task instances through the run index.
    source = "task_instances ti WHERE"
    if window:
        source = (
            "dag_runs r CROSS JOIN task_instances ti "
            "WHERE ti.run_pk = r.id AND r.dag_id = ti.dag_id AND"
        )
    rows = tx.rows(
        "SELECT ti.task_id, COUNT(*), AVG(ti.duration_ms), "
        "SUM(CASE WHEN ti.state = 'failed' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN ti.try_number > 1 THEN 1 ELSE 0 END), "
        "MAX(CASE WHEN ti.state = 'success' THEN ti.end_date END), "
        "MAX(CASE WHEN ti.state = 'failed' THEN ti.end_date END) "
        f"FROM {source} ti.dag_id = ? AND ti.try_number > 0{window} "
        "GROUP BY ti.task_id ORDER BY ti.task_id",
        [dag_id, *params],
    )
    return [_task_stats(*row) for row in rows]


def _task_totals(tx: Tx, dag_id: str) -> list[TaskStats]:
    """The whole history from the totals the triggers keep, plus two index look-ups per task
    for its latest success and failure."""
    latest = (
        "(SELECT ti.end_date FROM task_instances ti WHERE ti.dag_id = t.dag_id "
        "AND ti.task_id = t.task_id AND ti.state = '{state}' AND ti.end_date IS NOT NULL "
        "AND ti.try_number > 0 ORDER BY ti.end_date DESC LIMIT 1)"
    )
    rows = tx.rows(
        "SELECT t.task_id, t.started, "
        "CASE WHEN t.durations > 0 THEN 1.0 * t.duration_sum / t.durations END, "
        f"t.failed, t.retried, {latest.format(state='success')}, "
        f"{latest.format(state='failed')} "
        "FROM task_totals t WHERE t.dag_id = ? AND t.started > 0 ORDER BY t.task_id",
        [dag_id],
    )
    return [_task_stats(*row) for row in rows]


def _task_stats(
    task_id: str, runs: Any, avg: Any, failed: Any, retried: Any, last_ok: Any, last_bad: Any
) -> TaskStats:
    return TaskStats(
        task_id=task_id,
        runs=int(runs),
        avg_duration_ms=float(avg) if avg is not None else None,
        failure_rate=int(failed) / int(runs),
        retry_rate=int(retried) / int(runs),
        last_success=parse_ts(last_ok) if last_ok else None,
        last_failure=parse_ts(last_bad) if last_bad else None,
    )
