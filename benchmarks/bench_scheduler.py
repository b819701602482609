"""Scheduler benchmark: decision time per wake-up with 1,000 scheduled DAGs, and DAG
statistics for a DAG with 100,000 runs on SQLite and PostgreSQL.
Run: python benchmarks/bench_scheduler.py [--backend sqlite|postgres|all]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile
from bench_store import bulk_load

from pipeline_core.dag.model import DAG, Task
from pipeline_core.history import History
from pipeline_core.model import DagRun, TaskSpec
from pipeline_core.scheduler.scheduler import Scheduler
from pipeline_core.state import RunState
from pipeline_core.store import open_store

PG_DSN = os.environ.get("PIPELINE_CORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
START = datetime(2026, 1, 1, tzinfo=UTC)


class Recorder:
    """Creates the runs in the store like the engine does, without running them."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.dags: dict[str, DAG] = {}

    def set_dags(self, dags):  # type: ignore[no-untyped-def]
        self.dags = dict(dags)

    def trigger(self, request):  # type: ignore[no-untyped-def]
        run = DagRun(
            request.dag_id, request.run_id, RunState.QUEUED, request.run_type, request.logical_date
        )
        run = self.store.runs.create_run(run, [TaskSpec("a")])
        self.store.runs.transition_run(
            request.dag_id, run.run_id, RunState.QUEUED, RunState.CANCELLED
        )
        return run

    def cancel(self, *a):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    retry = set_paused = cancel


def decision_times(url: str) -> None:
    store = open_store(url)
    dags = {
        f"d{i:04d}": DAG(
            f"d{i:04d}",
            (Task("a"),),
            schedule=["*/5 * * * *", "0 * * * *", "0 6 * * *"][i % 3],
            start_date=START,
        )
        for i in range(1000)
    }
    scheduler = Scheduler(store, Recorder(store))
    scheduler.set_dags(dags)
    now = START + timedelta(days=30)
    scheduler.tick(now)  # first tick creates the latest missed run of every DAG
    idle, busy = [], []
    for step in range(1, 61):
        moment = now + timedelta(minutes=step)
        started = time.perf_counter()
        scheduler.tick(moment)
        (busy if moment.minute % 5 == 0 else idle).append((time.perf_counter() - started) * 1000)
    print(
        f"wake-up with nothing due (1,000 DAGs): median {statistics.median(idle):.3f} ms, max {max(idle):.3f} ms"
    )
    print(
        f"wake-up creating due runs (≈333-1,000 DAGs due): median {statistics.median(busy):.1f} ms, "
        f"p99 {percentile(busy, 99):.1f} ms"
    )
    print(f"  per DAG due: {statistics.median(busy) / 333:.3f} ms (one store transaction each)")
    store.close()


def stats_time(url: str, label: str) -> None:
    store = open_store(url)
    bulk_load(store, dags=1, runs_per_dag=100_000, tasks=5)
    history = History(store)
    times = []
    for _ in range(7):
        started = time.perf_counter()
        stats = history.dag_stats("dag_000")
        times.append((time.perf_counter() - started) * 1000)
    assert stats["runs"]["total"] == 100_000
    print(
        f"{label}: DAG statistics over 100,000 runs / 500,000 task instances: median {statistics.median(times):.0f} ms"
    )
    window = []
    for _ in range(7):
        started = time.perf_counter()
        history.dag_stats("dag_000", since=START, until=START + timedelta(days=30))
        window.append((time.perf_counter() - started) * 1000)
    print(f"{label}: the same for a 30-day window: median {statistics.median(window):.0f} ms")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="all", choices=("sqlite", "postgres", "all"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as folder:
        decision_times(f"sqlite:///{folder}/sched.db")
        if args.backend in ("sqlite", "all"):
            stats_time(f"sqlite:///{folder}/stats.db", "sqlite")
    if args.backend in ("postgres", "all"):
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        try:
            stats_time(f"{PG_DSN}?schema={schema}", "postgres")
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
