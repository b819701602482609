"""Event-driven runs through ``pipeline-core serve`` on SQLite, with real HTTP clients.

- webhook request → the run's first task running: a signed delivery per request (one
  keep-alive client), the task's stored start minus the request's send time, p50 / p99;
- asset update → the consumer's first task running: ``POST /assets/events``, then the run it
  started (``asset_triggered__<update id>``), its task's start minus the post's send time;
- sustained updates: ``--rate`` updates a second for ``--seconds`` to a consumer of one no-op
  task, with and without ``collapse``: updates sent, runs made, and the waiting queue
  sampled every second (a backlog that grows means the consumer falls behind).

Run: python benchmarks/bench_events.py [--deliveries 200] [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile

from pipeline_core.model import TaskKey
from pipeline_core.store import open_store
from pipeline_core.store.types import RunQuery

SECRET = "bench-secret"
DAGS = {
    "hooked": """
dag_id: hooked
max_active_runs: 1000
webhooks:
  push: {secret: "${env:BENCH_WEBHOOK_SECRET}", idempotency_header: X-Delivery}
tasks: {t: {type: noop}}
""",
    "consumer": """
dag_id: consumer
max_active_runs: 1000
schedule: {assets: "bench://latency"}
tasks: {t: {type: noop}}
""",
    "every": """
dag_id: every
max_active_runs: 1000
schedule: {assets: "bench://every"}
tasks: {t: {type: noop}}
""",
    "merged": """
dag_id: merged
schedule: {assets: "bench://merged", collapse: true}
tasks: {t: {type: noop}}
""",
}


def serve(folder: Path, db: str) -> tuple[subprocess.Popen[bytes], int]:
    log = folder / "serve.log"
    env = {**os.environ, "BENCH_WEBHOOK_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "serve", "--dags-folder", str(folder / "dags"),
         "--db", db, "--port", "0", "--webhook-rate", "100000"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "API on http://" in line:
                return process, int(line.rsplit(":", 1)[1].split("/")[0])
        time.sleep(0.05)
    raise RuntimeError(log.read_text())


def started_at(store: Any, dag_id: str, run_id: str) -> float | None:
    ti = store.tasks.get_task_instance(TaskKey(dag_id, run_id, "t"))
    return None if ti.start_date is None else ti.start_date.timestamp()


def settle(store: Any, pairs: list[tuple[str, str, float]]) -> list[float]:
    """Milliseconds from each send to its run's task starting (waiting for all to start)."""
    deadline = time.monotonic() + 60
    latencies: list[float] = []
    for dag_id, run_id, sent in pairs:
        while (start := _start(store, dag_id, run_id)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if start is not None:
            latencies.append((start - sent) * 1000)
    return latencies


def _start(store: Any, dag_id: str, run_id: str) -> float | None:
    try:
        return started_at(store, dag_id, run_id)
    except Exception:
        return None


def webhooks(base: str, store: Any, count: int) -> list[float]:
    pairs = []
    with requests.Session() as session:
        for i in range(count):
            body = json.dumps({"n": i}).encode()
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature,
                       "X-Delivery": f"d-{i}"}  # fmt: skip
            sent = time.time()
            answer = session.post(f"{base}/webhooks/hooked/push", data=body, headers=headers)
            assert answer.status_code == 202, answer.text
            pairs.append(("hooked", answer.json()["data"]["run"]["run_id"], sent))
            time.sleep(0.01)
    return settle(store, pairs)


def assets(base: str, store: Any, count: int) -> list[float]:
    pairs = []
    with requests.Session() as session:
        for _ in range(count):
            sent = time.time()
            answer = session.post(f"{base}/assets/events", json={"uri": "bench://latency"})
            assert answer.status_code == 201, answer.text
            pairs.append(("consumer", f"asset_triggered__{answer.json()['data']['id']}", sent))
            time.sleep(0.01)
    return settle(store, pairs)


def sustained(
    base: str, store: Any, uri: str, dag_id: str, rate: int, seconds: float, direct: bool
) -> dict[str, Any]:
    """``rate`` updates a second from four senders for ``seconds`` — over HTTP, or
    ``direct`` into the store as task outlets record them (HTTP clients on the server's two
    cores fall short of the rate); the queue sampled each second; then how long the
    consumer takes to drain it."""
    before = store.runs.query_runs(RunQuery(dag_id=dag_id, limit=0)).total
    sent = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def sender(share: float) -> None:
        with requests.Session() as session:
            next_at = time.monotonic()
            while (now := time.monotonic()) < stop:
                if now < next_at:
                    time.sleep(next_at - now)
                if direct:
                    store.assets.post_update(uri)
                else:
                    session.post(f"{base}/assets/events", json={"uri": uri})
                with lock:
                    sent[0] += 1
                next_at += 1 / share

    threads = [threading.Thread(target=sender, args=(rate / 4,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    backlog = []
    while time.monotonic() < stop:
        time.sleep(1)
        backlog.append(len(store.assets.waiting(dag_id)))
    for thread in threads:
        thread.join()
    drained_at = time.monotonic()
    while store.assets.waiting(dag_id) and time.monotonic() - drained_at < 120:
        time.sleep(0.2)
    runs = store.runs.query_runs(RunQuery(dag_id=dag_id, limit=0)).total - before
    return {"sent": sent[0], "runs": runs, "backlog": backlog,
            "drain_s": time.monotonic() - drained_at}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=200)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "dags").mkdir()
        for name, text in DAGS.items():
            (folder / "dags" / f"{name}.yaml").write_text(text)
        db = f"sqlite:///{folder / 'events.db'}"
        process, port = serve(folder, db)
        base = f"http://127.0.0.1:{port}/api/v1"
        store = open_store(db)
        try:
            for dag_id in DAGS:
                requests.patch(f"{base}/dags/{dag_id}", json={"is_paused": False}, timeout=10)
            hooks = webhooks(base, store, args.deliveries)
            print(f"webhook → first task running : p50 {percentile(hooks, 50):.2f} ms, "
                  f"p99 {percentile(hooks, 99):.2f} ms ({len(hooks)} deliveries)")  # fmt: skip
            updates = assets(base, store, args.deliveries)
            print(f"asset update → first task running : p50 {percentile(updates, 50):.2f} ms, "
                  f"p99 {percentile(updates, 99):.2f} ms ({len(updates)} updates)")  # fmt: skip
            for uri, dag_id, label, direct in (
                ("bench://every", "every", "every update a run, over HTTP", False),
                ("bench://every", "every", "every update a run, into the store", True),
                ("bench://merged", "merged", "collapse, into the store", True),
            ):
                found = sustained(base, store, uri, dag_id, args.rate, args.seconds, direct)
                print(f"{args.rate}/s for {args.seconds:g} s, {label}: {found['sent']} sent "
                      f"({found['sent'] / args.seconds:.0f}/s), {found['runs']} runs, waiting "
                      f"each second {found['backlog']}, drained {found['drain_s']:.1f} s after")  # fmt: skip
        finally:
            store.close()
            process.send_signal(signal.SIGTERM)
            process.wait(60)


if __name__ == "__main__":
    main()
