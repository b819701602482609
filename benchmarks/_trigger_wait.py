"""Trigger-and-wait latency, for bench_api.py: how long after a run ends does a client that
waits for it know? Measured as the client's receipt time minus the run's stored end (one
machine, one wall clock), over ``runs`` runs of a one-task DAG, three ways: a held
``GET .../wait``, the SSE stream, and ``pipeline-core runs trigger --wait`` (the process's
exit: its last read and shutdown included)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime

from _common import percentile

from pipeline_core.client import Client


def _ended(run: dict) -> float:  # type: ignore[type-arg]
    return datetime.fromisoformat(run["end_date"].replace("Z", "+00:00")).timestamp()


def by_wait(url: str, dag_id: str, runs: int) -> list[float]:
    latencies = []
    with Client(url) as api:
        for _ in range(runs):
            run = api.trigger_run(dag_id).run
            waited = api.wait_run(dag_id, run["run_id"], timeout=60)
            received = time.time()
            latencies.append(received - _ended(waited.run))
    return latencies


def by_events(url: str, dag_id: str, runs: int) -> list[float]:
    """One stream open for all runs (as a dashboard or a long-lived CI agent keeps it)."""
    received: dict[str, float] = {}
    ended: dict[str, float] = {}
    done = threading.Event()
    subscribed = threading.Event()

    def follow() -> None:
        with Client(url) as api:
            for event in api.events(dag_id=dag_id, types=("run.state_changed",)):
                if event.type == "open":
                    subscribed.set()
                elif event.data.get("new_state") == "success":
                    received[event.data["run_id"]] = time.time()
                    ended[event.data["run_id"]] = datetime.fromisoformat(
                        event.data["timestamp"].replace("Z", "+00:00")
                    ).timestamp()
                    if len(received) >= runs:
                        done.set()
                        return

    threading.Thread(target=follow, daemon=True).start()
    subscribed.wait(10)
    with Client(url) as api:
        for _ in range(runs):
            run_id = api.trigger_run(dag_id).run["run_id"]
            while run_id not in received and not done.is_set():
                time.sleep(0.001)  # the next run starts once this one was seen
    done.wait(60)
    return [received[r] - ended[r] for r in received]


def by_cli(url: str, dag_id: str, runs: int) -> list[float]:
    env = {**os.environ, "PIPELINE_CORE_SERVER": url}
    latencies = []
    with Client(url) as api:
        for i in range(runs):
            run_id = f"cli_{os.getpid()}_{i}"
            subprocess.run(
                [sys.executable, "-m", "pipeline_core", "runs", "trigger", dag_id, "--run-id",
                 run_id, "--wait"],
                check=True, capture_output=True, env=env,
            )  # fmt: skip
            exited = time.time()
            latencies.append(exited - _ended(api.get_run(dag_id, run_id)))
    return latencies


def report(url: str, dag_id: str, runs: int) -> None:
    for name, measure in (("GET .../wait", by_wait), ("SSE stream", by_events),
                          ("CLI runs trigger --wait (exit)", by_cli)):  # fmt: skip
        ms = [x * 1000 for x in measure(url, dag_id, runs)]
        print(
            f"[trigger-and-wait] {name:<31} runs {len(ms):>4}  run end → client: "
            f"p50 {statistics.median(ms):6.1f} ms  p99 {percentile(ms, 99):6.1f} ms"
        )
