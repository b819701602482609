"""Mapped task instances: the expansion's write, the API's pages of instances and the
dashboard's run view, on a run whose task is mapped into 10,000 instances.

1. ``ExpandTask`` of 10,000 instances: one transaction (SQLite, and PostgreSQL in a schema
   of its own on ``PIPELINE_CORE_PG_DSN`` when one answers), median of several.
2. ``GET …/tasks/load/mapped?limit=100&offset=…`` against a ``serve --no-scheduler`` process,
   one keep-alive client, offsets spread over the 10,000: p50/p99.
3. Debian's Chromium (headless): navigation → the run view complete (the
   ``pipeline-core:rendered`` mark), and a click on the task → its first page of instances.
Run: python benchmarks/bench_mapped.py [--repeat 5] [--requests 500]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile
from bench_api import free_port
from bench_ui import CHROMIUM, start

from pipeline_core.errors import PipelineError
from pipeline_core.model import DagRun, ExpandTask, TaskChange, TaskKey, TaskSpec, utcnow
from pipeline_core.state import RunState, TaskState
from pipeline_core.store import open_store
from pipeline_core.store.base import Store

COUNT = 10_000
PG_DSN = os.environ.get("PIPELINE_CORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DAG = "tasks:\n  files: {type: noop}\n  load: {type: noop, depends_on: [files]}\n"


def expand(store: Store, run_id: str) -> float:
    run = DagRun("mapped", run_id, RunState.RUNNING, "manual", utcnow())
    store.runs.create_run(run, [TaskSpec("files"), TaskSpec("load")])
    started = time.perf_counter()
    store.runs.apply([ExpandTask(TaskKey("mapped", run_id, "load"), COUNT)])
    return time.perf_counter() - started


def expansions(url: str, repeat: int) -> float:
    store = open_store(url)
    try:
        expand(store, "warm")
        return statistics.median(expand(store, f"r{i}") for i in range(repeat))
    finally:
        store.close()


def drop_schema(schema: str) -> None:
    import psycopg

    with contextlib.suppress(psycopg.Error), psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pages(port: int, requests: int) -> tuple[float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    path = "/api/v1/dags/mapped/runs/wide/tasks/load/mapped?limit=100&offset={}"
    samples = []
    for i in range(requests + 20):
        started = time.perf_counter()
        connection.request("GET", path.format(random.randrange(0, COUNT - 100)))
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        if i >= 20:  # the first ones warm the server
            samples.append(time.perf_counter() - started)
    connection.close()
    return statistics.median(samples), percentile(samples, 99)


def dashboard(port: int, loads: int) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{port}/ui/dags/mapped/runs/wide"
    rendered, opened = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        for _ in range(loads + 1):  # the first load warms the server
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.locator("main[data-ready]").wait_for()
            page.locator('tr[data-task="load"] .mapped').wait_for()
            mark = page.evaluate(
                "performance.getEntriesByName('pipeline-core:rendered')[0].startTime"
            )
            rendered.append(mark / 1000)
            started = time.perf_counter()
            page.locator('tr[data-task="load"]').get_by_role("button", name="load").click()
            page.locator("section.instances tbody tr").nth(99).wait_for()
            opened.append(time.perf_counter() - started)
            context.close()
        browser.close()
    return statistics.median(rendered[1:]), statistics.median(opened[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'mapped.db'}"
        sqlite = expansions(db, args.repeat)
        print(f"expand into {COUNT:,} instances, one write (SQLite)     : {sqlite * 1000:.1f} ms")
        schema = f"bench_mapped_{os.getpid()}"
        try:
            pg = expansions(f"{PG_DSN}?schema={schema}", args.repeat)
            print(f"expand into {COUNT:,} instances, one write (PostgreSQL) : {pg * 1000:.1f} ms")
        except PipelineError as exc:
            print(f"PostgreSQL skipped: {exc}")
        finally:
            drop_schema(schema)
        store = open_store(db)
        run = DagRun("mapped", "wide", RunState.QUEUED, "manual", utcnow())
        store.runs.create_run(run, [TaskSpec("files"), TaskSpec("load")])
        store.runs.apply([ExpandTask(TaskKey("mapped", "wide", "load"), COUNT)])
        store.tasks.transition_tasks(
            [
                TaskChange(TaskKey("mapped", "wide", "load", i), TaskState.QUEUED,
                           TaskState.RUNNING, try_number=1)
                for i in range(0, COUNT, 7)
            ]
        )  # fmt: skip
        store.close()
        folder = Path(tmp) / "dags"
        folder.mkdir()
        (folder / "mapped.yaml").write_text(DAG)
        port = free_port()
        server = start(folder, db, port)
        try:
            p50, p99 = pages(port, args.requests)
            print(
                f"a page of 100 of {COUNT:,} instances (API)      : p50 {p50 * 1000:.2f} ms, "
                f"p99 {p99 * 1000:.2f} ms ({args.requests} requests, one keep-alive client)"
            )
            if Path(CHROMIUM).exists():
                rendered, opened = dashboard(port, args.repeat)
                print(
                    f"run view with {COUNT:,} instances: rendered {rendered * 1000:.0f} ms "
                    f"after navigation; its first 100 instances shown {opened * 1000:.0f} ms "
                    f"after the click (median of {args.repeat})"
                )
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
