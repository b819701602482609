"""Notification benchmark on the default SQLite store, the receiver in a process of its own.

1. Latency: the commit of an ending event (a task moved to ``failed``) → the request received
   by a local webhook, p50/p99 over sequential events (one at a time, so each is timed alone).
2. Fan-out cost: a run of 1,000 tasks that fail, each with a rule (``default_args.notify``),
   against the same run without rules, alternated; every notification must be delivered.
Run: python benchmarks/bench_notify.py [--events 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import http.server
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile

from pipeline_core.dag.serialize import dag_to_dict, definition_hash
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.engine import Engine
from pipeline_core.model import DagRun, TaskChange, TaskKey, TaskSpec, TriggerRequest, utcnow
from pipeline_core.notify.dispatch import DeliverySettings, Dispatcher
from pipeline_core.state import FINISHED_RUN_STATES, RunState, TaskState
from pipeline_core.store import open_store
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord, NotificationQuery

TASKS = 1000


def receive(port: Any, arrivals: Any) -> None:
    """The receiver process: answers 200 and reports each request's arrival (monotonic)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrived = time.monotonic()
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            arrivals.put((self.headers["X-Pipeline-Core-Delivery"], arrived))

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port.value = server.server_address[1]
    server.serve_forever()


def register(store: Store, text: str) -> None:
    dag = load_dag_text(text)
    definition = dag_to_dict(dag)
    store.dags.upsert_dag(
        DagRecord(dag.dag_id, definition=definition, definition_hash=definition_hash(definition))
    )


def latency(store: Store, url: str, arrivals: Any, events: int, prefix: str) -> list[float]:
    register(
        store, f"dag_id: lat\nnotify: [{{on: [task_failed], webhook: '{url}'}}]\ntasks: {{a: {{}}}}"
    )
    samples = []
    for i in range(events):
        run = DagRun("lat", f"{prefix}{i}", RunState.RUNNING, "manual", utcnow())
        store.runs.create_run(run, [TaskSpec("a")])
        key = TaskKey("lat", run.run_id, "a")
        store.tasks.transition_tasks(
            [TaskChange(key, TaskState.QUEUED, TaskState.RUNNING, try_number=1)]
        )
        started = time.monotonic()  # includes the commit itself
        store.tasks.transition_tasks(
            [TaskChange(key, TaskState.RUNNING, TaskState.FAILED, error="boom")]
        )
        _, arrived = arrivals.get(timeout=30)
        samples.append(arrived - started)
    return samples


def fan_dag(dag_id: str, url: str | None) -> str:
    rule = f"  notify: [{{on: [task_failed], webhook: '{url}'}}]\n" if url else ""
    tasks = "".join(
        f"  t{i}: {{type: python, callable: 'json:loads', kwargs: {{s: '{{'}}, depends_on: [start]}}\n"
        for i in range(TASKS)
    )
    return (
        f"dag_id: {dag_id}\nconcurrency: 128\ndefault_args:\n  executor: thread\n{rule}"
        f"tasks:\n  start: {{type: noop}}\n{tasks}"
    )


class FanOut:
    def __init__(self, store: Store, url: str) -> None:
        self.store = store
        dags = {}
        for dag_id, rule in (("plain", None), ("ruled", url)):
            text = fan_dag(dag_id, rule)
            register(store, text)
            dags[dag_id] = load_dag_text(text)
        self.done = threading.Condition()
        self.finished: set[str] = set()
        store.add_listener(self._heard)
        self.engine = Engine(store, dags).start()

    def _heard(self, events: list[Any]) -> None:
        ends = {s.value for s in FINISHED_RUN_STATES}
        with self.done:
            for event in events:
                if event.type == "run.state_changed" and event.payload["new_state"] in ends:
                    self.finished.add(event.run_id)
            self.done.notify_all()

    def run(self, dag_id: str) -> float:
        started = time.perf_counter()
        run = self.engine.trigger(TriggerRequest(dag_id))
        with self.done:
            assert self.done.wait_for(lambda: run.run_id in self.finished, timeout=600)
        return time.perf_counter() - started

    def close(self) -> None:
        self.engine.stop(grace=5)


def drain(store: Store, arrivals: Any, expected: int) -> None:
    """Wait until ``expected`` more requests arrived and nothing is pending."""
    for _ in range(expected):
        arrivals.get(timeout=120)
    query = NotificationQuery(state="pending", limit=1)
    give_up = time.monotonic() + 30  # the last attempts are being recorded
    while store.notifications.list_notifications(query).total:
        assert time.monotonic() < give_up, "notifications still pending"
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    port = multiprocessing.Value("i", 0)
    arrivals: Any = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=receive, args=(port, arrivals), daemon=True)
    receiver.start()
    while not port.value:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port.value}/hook"
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{folder}/bench.db")
        store.pools.update_pool("default_pool", slots=128)
        settings = DeliverySettings(backoff=0.1, max_backoff=1)
        dispatcher = Dispatcher(store, settings).start()
        try:
            latency(store, url, arrivals, 20, "warm")  # warm up
            samples = latency(store, url, arrivals, args.events, "r")
            print(
                f"commit → webhook received : p50 {percentile(samples, 50) * 1000:.2f} ms, "
                f"p99 {percentile(samples, 99) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms "
                f"({args.events} events)"
            )
            fan = FanOut(store, url)
            try:
                fan.run("plain")  # warm up
                fan.run("ruled")
                drain(store, arrivals, TASKS)
                plain, ruled, quiet = [], [], []
                for _ in range(args.repeat):
                    plain.append(fan.run("plain"))
                    ruled.append(fan.run("ruled"))
                    drain(store, arrivals, TASKS)  # every one delivered before the next
                    dispatcher.stop()  # the outbox written, nothing delivered meanwhile
                    quiet.append(fan.run("ruled"))
                    dispatcher = Dispatcher(store, settings).start()
                    drain(store, arrivals, TASKS)
            finally:
                fan.close()
            p, r, q = (statistics.median(x) for x in (plain, ruled, quiet))
            tasks = TASKS + 1
            print(
                f"1,000 failing tasks, no rules              : {p:.3f} s ({tasks / p:,.0f} tasks/s)"
            )
            print(
                f"  a rule each, delivered during the run    : {r:.3f} s ({tasks / r:,.0f} tasks/s)"
            )
            print(
                f"  a rule each, delivered after the run     : {q:.3f} s ({tasks / q:,.0f} tasks/s)"
            )
            print(
                f"throughput with rules / without: {p / r:.3f} delivering, {p / q:.3f} writing the outbox only"
            )
            print(f"(all {TASKS} notifications of every run delivered)")
        finally:
            dispatcher.stop()
            store.close()
            receiver.terminate()


if __name__ == "__main__":
    main()
