"""Store benchmark: CAS transitions per second, history queries at scale, event-log reads, disk use.

Run: python benchmarks/bench_store.py [--backend sqlite|postgres|all] [--runs 100000] [--tasks 10]
PostgreSQL uses PIPELINE_CORE_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test) and a
private schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile

from pipeline_core.model import DagRun, TaskChange, TaskKey, TaskSpec, iso
from pipeline_core.state import RunState, TaskState
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery, RunQuery, TaskInstanceQuery

PG_DSN = os.environ.get("PIPELINE_CORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BASE = datetime(2020, 1, 1, tzinfo=UTC)
STATES = ("success", "success", "success", "failed", "cancelled")


def transitions_per_second(store, n: int, batch: int) -> float:
    tasks = [f"t{i}" for i in range(batch)]
    rounds = max(1, n // (2 * batch))
    runs = []
    for r in range(rounds):
        run = DagRun("bench_tx", f"tx-{uuid.uuid4().hex}", RunState.QUEUED, "manual", BASE)
        store.runs.create_run(run, [TaskSpec(t) for t in tasks])
        runs.append(run.run_id)
    start = time.perf_counter()
    for run_id in runs:
        for before, after in (
            (TaskState.QUEUED, TaskState.RUNNING),
            (TaskState.RUNNING, TaskState.SUCCESS),
        ):
            changes = [TaskChange(TaskKey("bench_tx", run_id, t), before, after) for t in tasks]
            store.tasks.transition_tasks(changes)
    elapsed = time.perf_counter() - start
    return rounds * 2 * batch / elapsed


def bulk_load(store, dags: int, runs_per_dag: int, tasks: int) -> None:
    """Fill the history tables directly (loading through the API would take far longer)."""
    rng = random.Random(1)
    batch_runs, batch_tis = [], []

    def flush() -> None:
        def work(tx, _pending):  # type: ignore[no-untyped-def]
            tx.many(
                "INSERT INTO dag_runs (id, dag_id, run_id, state, run_type, logical_date, conf, "
                "queued_at, start_date, end_date, duration_ms) VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?)",
                batch_runs,
            )
            tx.many(
                "INSERT INTO task_instances (run_pk, ordinal, dag_id, run_id, task_id, state, try_number, "
                "max_tries, pool, priority_weight, start_date, end_date, duration_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, 1, 1, 'default_pool', 1, ?, ?, ?)",
                batch_tis,
            )

        store.sql.write(work)
        batch_runs.clear()
        batch_tis.clear()

    pk = 1_000_000
    for d in range(dags):
        dag_id = f"dag_{d:03d}"
        for r in range(runs_per_dag):
            pk += 1
            logical = BASE + timedelta(hours=r)
            start = logical + timedelta(seconds=rng.randint(0, 60))
            duration = rng.randint(1_000, 600_000)
            end = start + timedelta(milliseconds=duration)
            state = rng.choice(STATES)
            run_id = f"scheduled__{iso(logical)}"
            batch_runs.append(
                (
                    pk,
                    dag_id,
                    run_id,
                    state,
                    "scheduled",
                    iso(logical),
                    iso(logical),
                    iso(start),
                    iso(end),
                    duration,
                )
            )
            for t in range(tasks):
                batch_tis.append(
                    (
                        pk,
                        t,
                        dag_id,
                        run_id,
                        f"task_{t}",
                        state,
                        iso(start),
                        iso(end),
                        duration // tasks,
                    )
                )
            if len(batch_tis) >= 50_000:
                flush()
    flush()
    store.sql.write(
        lambda tx, _: tx.run("ANALYZE")
    )  # as autovacuum / a DBA would after a bulk load


def latency(fn, samples: int) -> tuple[float, float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), percentile(times, 99)


def run_backend(name: str, url: str, args: argparse.Namespace, size_fn) -> None:  # type: ignore[no-untyped-def]
    store = open_store(url)
    print(f"\n== {name}")
    single = [transitions_per_second(store, args.transitions, 1) for _ in range(3)]
    batched = [transitions_per_second(store, args.transitions, 50) for _ in range(3)]
    print(f"transitions/s, one per transaction : {statistics.median(single):,.0f}")
    print(f"transitions/s, 50 per transaction  : {statistics.median(batched):,.0f}")
    started = time.perf_counter()
    dags = args.runs // 1000
    bulk_load(store, dags, 1000, args.tasks)
    print(
        f"loaded {args.runs:,} runs / {args.runs * args.tasks:,} task instances in {time.perf_counter() - started:.0f} s"
    )
    rng = random.Random(2)

    def runs_query() -> None:
        dag_id = f"dag_{rng.randrange(dags):03d}"
        page = store.runs.query_runs(
            RunQuery(
                dag_id=dag_id,
                states=(RunState.SUCCESS, RunState.FAILED),
                order_by="-logical_date",
                limit=100,
                offset=rng.choice((0, 100, 500)),
            )
        )
        assert page.total > 0

    def history_query() -> None:
        dag_id = f"dag_{rng.randrange(dags):03d}"
        page = store.tasks.query_task_instances(
            TaskInstanceQuery(dag_id=dag_id, task_id=f"task_{rng.randrange(args.tasks)}", limit=100)
        )
        assert len(page.items) == 100

    for label, fn in (
        ("runs query (filtered, ordered, page of 100)", runs_query),
        ("task history (page of 100)", history_query),
    ):
        fn()
        p50, p99 = latency(fn, args.samples)
        print(f"{label:<45}: p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    for _ in range(20):
        store.events.append_event("bench.filler", {"n": 1})
    store.tasks.transition_tasks([])
    last = store.events.event_bounds()[1]
    events_needed = 5_000 - last
    if events_needed > 0:
        for i in range(0, events_needed, 100):
            store.sql.write(
                lambda tx, p: store.sql.append(
                    tx, p, [("bench.filler", {"i": i}, "dag_000", None, None)] * 100, BASE
                )
            )
    last = store.events.event_bounds()[1]

    def events_read() -> None:
        after = rng.randrange(0, last - 1000)
        assert len(store.events.read_events(EventQuery(after_seq=after, limit=1000))) == 1000

    p50, p99 = latency(events_read, args.samples)
    print(f"{'event log: 1,000 events after a seq':<45}: p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    size = size_fn(store)
    print(
        f"bytes on disk per task instance: {size / (args.runs * args.tasks):.0f}  (total {size / 1e6:.0f} MB, with runs and indexes)"
    )
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="all", choices=("sqlite", "postgres", "all"))
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--transitions", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.backend in ("sqlite", "all"):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "bench.db"

            def sqlite_size(store) -> int:  # type: ignore[no-untyped-def]
                store.backend._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return path.stat().st_size

            run_backend("sqlite", f"sqlite:///{path}", args, sqlite_size)
    if args.backend in ("postgres", "all"):
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"

        def pg_size(store) -> int:  # type: ignore[no-untyped-def]
            return int(
                store.sql.read(
                    lambda tx: tx.scalar(
                        "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = ? AND c.relkind = 'r'",
                        (schema,),
                    )
                )
            )

        try:
            run_backend("postgres", f"{PG_DSN}?schema={schema}", args, pg_size)
        finally:
            with psycopg.connect(PG_DSN, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
