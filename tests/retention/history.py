"""A store file filled in bulk with finished runs (task instances, a log, an XCom and events
each), through the store's own schema and triggers."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline_core.model import iso
from pipeline_core.store import Store, open_store

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def fill(path: Path, *, dags: int = 3, runs: int = 100, tasks: int = 4) -> Store:
    """``runs`` runs of each of ``dags`` DAGs (``d0``…), run ``n`` of a DAG ending ``n`` hours
    after ``BASE``; every 7th failed, every 11th cancelled. Returns the store, opened."""
    open_store(f"sqlite:///{path}").close()  # the schema
    db = sqlite3.connect(path)
    run_rows, ti_rows, log_rows, xcom_rows, event_rows = [], [], [], [], []
    pk = seq = 0
    for dag in range(dags):
        for number in range(runs):
            pk += 1
            end = BASE + timedelta(hours=number)
            start = end - timedelta(milliseconds=100 + pk % 700)
            state = "failed" if pk % 7 == 0 else "cancelled" if pk % 11 == 0 else "success"
            dag_id, run_id = f"d{dag}", f"r{number}"
            ms = int((end - start).total_seconds() * 1000)
            run_rows.append((pk, dag_id, run_id, state, "manual", iso(start), "{}", iso(start),
                             iso(start), iso(end), ms))  # fmt: skip
            for task in range(tasks):
                ti_rows.append((pk, task, dag_id, run_id, f"t{task}",
                                state if task == tasks - 1 and state != "cancelled" else "success",
                                1 + (pk + task) % 2, 2, "default_pool", 1, iso(start), iso(end),
                                ms - task))  # fmt: skip
            log_rows.append((dag_id, run_id, "t0", 1, 0, f"log of {dag_id} {run_id}\n"))
            xcom_rows.append((dag_id, run_id, "t0", "return_value", str(pk), 2, iso(end)))
            for kind in ("run.state_changed", "task.state_changed"):
                seq += 1
                event_rows.append((seq, kind, iso(end), dag_id, run_id, None, "{}"))
    with db:
        db.executemany("INSERT INTO dag_runs (id, dag_id, run_id, state, run_type, logical_date, "
                       "conf, queued_at, start_date, end_date, duration_ms) "
                       "VALUES (?,?,?,?,?,?,?,?,?,?,?)", run_rows)  # fmt: skip
        db.executemany("INSERT INTO task_instances (run_pk, ordinal, dag_id, run_id, task_id, "
                       "state, try_number, max_tries, pool, priority_weight, start_date, "
                       "end_date, duration_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", ti_rows)  # fmt: skip
        db.executemany("INSERT INTO task_logs (dag_id, run_id, task_id, try_number, byte_offset, "
                       "data) VALUES (?,?,?,?,?,?)", log_rows)  # fmt: skip
        db.executemany("INSERT INTO xcom (dag_id, run_id, task_id, key, value, size_bytes, "
                       "timestamp) VALUES (?,?,?,?,?,?,?)", xcom_rows)  # fmt: skip
        db.executemany("INSERT INTO events (seq, type, timestamp, dag_id, run_id, task_id, "
                       "payload) VALUES (?,?,?,?,?,?,?)", event_rows)  # fmt: skip
        db.execute("UPDATE event_counter SET seq = ?", (seq,))
    db.close()
    return open_store(f"sqlite:///{path}")


def whole(store: Store) -> bool:
    """Every stored run has all its task instances, and no row outlives its run (but the
    event that tells it was deleted)."""
    checks = (
        "SELECT COUNT(*) FROM dag_runs r WHERE (SELECT COUNT(*) FROM task_instances t "
        "WHERE t.run_pk = r.id) <> 4",
        "SELECT COUNT(*) FROM task_instances WHERE run_pk NOT IN (SELECT id FROM dag_runs)",
        "SELECT COUNT(*) FROM task_logs l WHERE NOT EXISTS (SELECT 1 FROM dag_runs r "
        "WHERE r.dag_id = l.dag_id AND r.run_id = l.run_id)",
        "SELECT COUNT(*) FROM xcom x WHERE NOT EXISTS (SELECT 1 FROM dag_runs r "
        "WHERE r.dag_id = x.dag_id AND r.run_id = x.run_id)",
        "SELECT COUNT(*) FROM events e WHERE e.run_id IS NOT NULL AND e.type <> 'run.deleted' "
        "AND NOT EXISTS (SELECT 1 FROM dag_runs r WHERE r.dag_id = e.dag_id "
        "AND r.run_id = e.run_id)",
    )
    return all(store.sql.read(lambda tx, c=c: tx.scalar(c)) == 0 for c in checks)  # type: ignore[attr-defined]


def runs_left(store: Store) -> int:
    return int(store.sql.read(lambda tx: tx.scalar("SELECT COUNT(*) FROM dag_runs")))  # type: ignore[attr-defined]


def statistics(store: Store, dags: int = 3) -> list[object]:
    return [
        (store.runs.run_stats(f"d{d}"), store.tasks.task_stats(f"d{d}"),
         store.runs.run_stats(f"d{d}", since=BASE + timedelta(days=1)))
        for d in range(dags)
    ]  # fmt: skip
