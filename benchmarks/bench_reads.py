"""Reads at scale: a SQLite store with D DAGs, R runs and T task instances (generated in bulk
with the store's own schema and triggers), then the API's read latencies over keep-alive HTTP
from one client: the DAG list (a page of 100, filtered by tag, searched with ?q=), a DAG's run
list, a run with its task instances, the grid (a DAG's last 25 runs with their task instances,
one read) and a DAG's statistics. Prints p50 and p99 of each.
Run: python benchmarks/bench_reads.py [--dags 1000] [--runs 100000] [--tasks 10] [--samples 200]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.model import iso
from pipeline_core.store import open_store
from pipeline_core.store.types import DagRecord

BASE = datetime(2025, 1, 1, tzinfo=UTC)


def build(path: str, dags: int, runs: int, tasks: int) -> float:
    """Fill an empty store; seconds it took."""
    started = time.perf_counter()
    store = open_store(f"sqlite:///{path}")
    definition = {"tasks": [{"task_id": f"t{i}", "depends_on": [f"t{i - 1}"] if i else []}
                            for i in range(tasks)]}  # fmt: skip
    for index in range(dags):
        store.dags.upsert_dag(DagRecord(
            f"dag_{index:05d}", tags=("team_a" if index % 2 else "team_b",),
            description=f"generated number {index}", definition=definition,
            definition_hash=f"{index:064x}", task_count=tasks,
        ))  # fmt: skip
    store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous = OFF")
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
            with db:
                db.executemany("INSERT INTO dag_runs (id, dag_id, run_id, state, run_type, "
                               "logical_date, conf, queued_at, start_date, end_date, duration_ms)"
                               " VALUES (?,?,?,?,?,?,?,?,?,?,?)", run_rows)  # fmt: skip
                db.executemany("INSERT INTO task_instances (run_pk, ordinal, dag_id, run_id, "
                               "task_id, state, try_number, max_tries, pool, priority_weight, "
                               "start_date, end_date, duration_ms) "
                               "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", ti_rows)  # fmt: skip
            run_rows, ti_rows = [], []
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - started


def timed(conn: http.client.HTTPConnection, path: str) -> float:
    started = time.perf_counter()
    conn.request("GET", path)
    answer = conn.getresponse()
    body = answer.read()
    assert answer.status == 200, (path, answer.status, body[:200])
    json.loads(body)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/reads.db"
        took = build(path, args.dags, args.runs, args.tasks)
        print(f"store: {args.dags:,} DAGs, {args.runs:,} runs, {args.runs * args.tasks:,} task "
              f"instances, built in {took:.0f} s")  # fmt: skip
        store = open_store(f"sqlite:///{path}")
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
            store.close()


if __name__ == "__main__":
    main()
