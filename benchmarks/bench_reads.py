"""Reads at scale: a SQLite store with D DAGs, R runs and T task instances (generated in bulk
with the store's own schema and triggers), then the API's read latencies over keep-alive HTTP
from one client: the DAG list (a page of 100, filtered by tag, searched with ?q=), a DAG's run
list, a run with its task instances, the grid (a DAG's last 25 runs with their task instances,
one read) and a DAG's statistics. Prints p50 and p99 of each.
Run: python benchmarks/bench_reads.py [--dags 1000] [--runs 100000] [--tasks 10] [--samples 200]
     [--pg postgresql://host/db]  (PostgreSQL instead of SQLite, in a schema of its own)
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.model import iso
from pipeline_core.store import Store, open_store
from pipeline_core.store.types import DagRecord

BASE = datetime(2025, 1, 1, tzinfo=UTC)


RUN_COLUMNS = (
    "id, dag_id, run_id, state, run_type, logical_date, conf, queued_at, "
    "start_date, end_date, duration_ms"
)
TI_COLUMNS = (
    "run_pk, ordinal, dag_id, run_id, task_id, state, try_number, max_tries, pool, "
    "priority_weight, start_date, end_date, duration_ms"
)


def add_dags(store: Store, dags: int, tasks: int) -> None:
    """Scheduled hourly from ``BASE``, each its own definition (as DAG files are): a listing
    shows every DAG's next run."""
    definition = {"schedule": "0 * * * *", "start_date": iso(BASE),
                  "tasks": [{"task_id": f"t{i}", "depends_on": [f"t{i - 1}"] if i else []}
                            for i in range(tasks)]}  # fmt: skip
    for index in range(dags):
        store.dags.upsert_dag(DagRecord(
            f"dag_{index:05d}", tags=("team_a" if index % 2 else "team_b",),
            schedule="0 * * * *", description=f"generated number {index}",
            definition=definition, definition_hash=f"{index:064x}", task_count=tasks,
        ))  # fmt: skip


def batches(dags: int, runs: int, tasks: int) -> Iterator[tuple[list[tuple], list[tuple]]]:  # type: ignore[type-arg]
    """The runs and task instances, about 200,000 task instances at a time."""
    per_dag = runs // dags
    run_rows, ti_rows = [], []
    pk = 0
    for index in range(dags):
        for number in range(per_dag):
            pk += 1
            start = BASE + timedelta(hours=number)
            end = start + timedelta(seconds=30 + (pk % 97))
            state = "failed" if pk % 50 == 0 else "success"
            run_id = f"scheduled__{iso(start)}"
            run_rows.append((pk, f"dag_{index:05d}", run_id, state, "scheduled", iso(start), "{}",
                             iso(start), iso(start), iso(end),
                             int((end - start).total_seconds() * 1000)))  # fmt: skip
            for task in range(tasks):
                ti_rows.append((pk, task, f"dag_{index:05d}", run_id, f"t{task}",
                                state if task == tasks - 1 else "success", 1, 1, "default_pool",
                                1, iso(start), iso(end), 1000))  # fmt: skip
        if len(ti_rows) >= 200_000 or index == dags - 1:
            yield run_rows, ti_rows
            run_rows, ti_rows = [], []


def build(path: str, dags: int, runs: int, tasks: int) -> float:
    """Fill an empty SQLite store; seconds it took."""
    started = time.perf_counter()
    store = open_store(f"sqlite:///{path}")
    add_dags(store, dags, tasks)
    store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")
    for run_rows, ti_rows in batches(dags, runs, tasks):
        with db:
            db.executemany(f"INSERT INTO dag_runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                           run_rows)  # fmt: skip
            db.executemany(f"INSERT INTO task_instances ({TI_COLUMNS}) "
                           "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", ti_rows)  # fmt: skip
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - started


def build_pg(url: str, schema: str, dags: int, runs: int, tasks: int) -> float:
    """Fill an empty PostgreSQL schema with COPY; the per-task totals the triggers keep are
    computed once at the end, as the migration that made them computes them."""
    import psycopg

    started = time.perf_counter()
    store = open_store(f"{url}?schema={schema}")
    add_dags(store, dags, tasks)
    store.close()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f'SET search_path TO "{schema}"')
        db.execute("ALTER TABLE task_instances DISABLE TRIGGER task_totals_track")
        for run_rows, ti_rows in batches(dags, runs, tasks):
            with db.cursor() as cursor:
                with cursor.copy(f"COPY dag_runs ({RUN_COLUMNS}) FROM STDIN") as copy:
                    for row in run_rows:
                        copy.write_row(row)
                with cursor.copy(f"COPY task_instances ({TI_COLUMNS}) FROM STDIN") as copy:
                    for row in ti_rows:
                        copy.write_row(row)
        db.execute("ALTER TABLE task_instances ENABLE TRIGGER task_totals_track")
        db.execute("SELECT setval(pg_get_serial_sequence('dag_runs', 'id'), %s)", (runs,))
        db.execute(
            "INSERT INTO task_totals SELECT dag_id, task_id, COUNT(*), COALESCE(SUM(duration_ms), "
            "0), COUNT(duration_ms), SUM(CASE WHEN state = 'failed' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN try_number > 1 THEN 1 ELSE 0 END) FROM task_instances "
            "WHERE try_number > 0 GROUP BY dag_id, task_id"
        )
        db.execute("VACUUM ANALYZE")  # not left to autovacuum while the reads are measured
    return time.perf_counter() - started


def timed(conn: http.client.HTTPConnection, path: str) -> float:
    started = time.perf_counter()
    conn.request("GET", path)
    answer = conn.getresponse()
    body = answer.read()
    assert answer.status == 200, (path, answer.status, body[:200])
    json.loads(body)
    return (time.perf_counter() - started) * 1000


def measure(store: Store, args: argparse.Namespace) -> None:
    """The reads, over the API on ``store``: p50 and p99 of each."""
    server = APIServer(APIServerOptions(store=store, port=0)).start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    rng = random.Random(7)
    per_dag = args.runs // args.dags

    def some_dag() -> str:
        return f"dag_{rng.randrange(args.dags):05d}"

    def some_run() -> tuple[str, str]:
        number = rng.randrange(per_dag)
        return some_dag(), f"scheduled__{iso(BASE + timedelta(hours=number))}"

    reads = {
        # Another page each time: the server keeps a page's answer, and a kept answer
        # is not what is measured.
        "DAG list, page of 100": lambda: timed(
            conn, f"/api/v1/dags?limit=100&offset={rng.randrange(args.dags)}"),
        "DAG list, by tag": lambda: timed(
            conn, f"/api/v1/dags?limit=100&tags=team_a&offset={rng.randrange(args.dags // 2)}"),
        "DAG list, ?q= search": lambda: timed(
            conn, f"/api/v1/dags?limit=100&q=number%20{rng.randrange(args.dags)}"),
        "a DAG's runs, page of 100": lambda: timed(conn, f"/api/v1/dags/{some_dag()}/runs?limit=100"),
        "a run with its task instances": lambda: timed(
            conn, "/api/v1/dags/{}/runs/{}".format(*some_run())),
        "grid: last 25 runs x tasks (one read)": lambda: timed(
            conn, f"/api/v1/dags/{some_dag()}/grid?limit=25"),
        "a DAG's statistics": lambda: timed(conn, f"/api/v1/dags/{some_dag()}/stats"),
    }  # fmt: skip
    try:
        for name, read in reads.items():
            for _ in range(10):
                read()  # warm
            samples = sorted(read() for _ in range(args.samples))
            print(f"{name:40s} p50 {percentile(samples, 50):7.2f} ms   "
                  f"p99 {percentile(samples, 99):7.2f} ms")  # fmt: skip
    finally:
        conn.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pg", help="measure on PostgreSQL at this URL (a schema of its own)")
    parser.add_argument("--keep", action="store_true",
                        help="PostgreSQL: keep the schema, and measure one kept before")  # fmt: skip
    args = parser.parse_args()
    print(f"machine: {machine()}")
    size = (f"{args.dags:,} DAGs, {args.runs:,} runs, {args.runs * args.tasks:,} task "
            "instances")  # fmt: skip
    if args.pg:
        import psycopg

        schema = "bench_reads"
        with psycopg.connect(args.pg, autocommit=True) as db:
            kept = db.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
            if not (args.keep and kept):
                db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        try:
            if args.keep and kept:
                print(f"PostgreSQL store: the one kept before ({size})")
            else:
                took = build_pg(args.pg, schema, args.dags, args.runs, args.tasks)
                print(f"PostgreSQL store: {size}, built in {took:.0f} s")
            store = open_store(f"{args.pg}?schema={schema}")
            try:
                measure(store, args)
            finally:
                store.close()
        finally:
            if not args.keep:
                with psycopg.connect(args.pg, autocommit=True) as db:
                    db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/reads.db"
        took = build(path, args.dags, args.runs, args.tasks)
        print(f"SQLite store: {size}, built in {took:.0f} s")
        store = open_store(f"sqlite:///{path}")
        try:
            measure(store, args)
        finally:
            store.close()


if __name__ == "__main__":
    main()
