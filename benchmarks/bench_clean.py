"""History clean-up at scale: a SQLite store of R finished runs with T task instances each
(1,000,000 task instances by default, built in bulk as bench_reads builds them), cleaned by
``pipeline-core db clean`` in a process of its own while this one triggers a run every 20 ms
on the same database, as the API does. Prints the clean-up's rows per second and the
trigger's latency before and during it (the pause the clean-up causes).
Run: python benchmarks/bench_clean.py [--dags 1000] [--runs 100000] [--tasks 10]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, percentile
from bench_reads import build

from pipeline_core.model import DagRun, TaskSpec
from pipeline_core.state import RunState
from pipeline_core.store import Store, open_store

ROOT = Path(__file__).parents[1]


def triggers(store: Store, stop: threading.Event, tasks: int, tag: str) -> list[float]:
    """Create a run every 20 ms until ``stop``; each one's latency in ms."""
    latencies, number = [], 0
    specs = [TaskSpec(f"t{i}") for i in range(tasks)]
    while not stop.is_set():
        number += 1
        run = DagRun("dag_00000", f"{tag}_{number}", RunState.QUEUED, "manual",
                     datetime.now(UTC))  # fmt: skip
        started = time.perf_counter()
        store.runs.create_run(run, specs)
        latencies.append((time.perf_counter() - started) * 1000)
        stop.wait(0.02)
    return latencies


def describe(name: str, samples: list[float]) -> str:
    return (f"{name:28s} {len(samples):5d} triggers  p50 {percentile(samples, 50):6.2f} ms  "
            f"p99 {percentile(samples, 99):6.2f} ms  max {max(samples):6.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dags", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/clean.db"
        took = build(path, args.dags, args.runs, args.tasks)
        rows = args.runs * (args.tasks + 1)
        size = os.path.getsize(path)
        print(f"store: {args.runs:,} finished runs, {args.runs * args.tasks:,} task instances, "
              f"{size / 2**20:.0f} MiB, built in {took:.0f} s")  # fmt: skip
        store = open_store(f"sqlite:///{path}")
        stop = threading.Event()
        quiet: list[float] = []
        timer = threading.Timer(5.0, stop.set)
        timer.start()
        quiet = triggers(store, stop, args.tasks, "quiet")
        print(describe("trigger, nothing else", quiet))
        stop.clear()
        during: list[float] = []
        trigger = threading.Thread(
            target=lambda: during.extend(triggers(store, stop, args.tasks, "during"))
        )
        trigger.start()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pipeline_core", "db", "clean", "--older-than", "300d",
             "--db", f"sqlite:///{path}"],
            capture_output=True, text=True, env=env, cwd=ROOT, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        stop.set()
        trigger.join()
        print(done.stdout.strip())
        longest = re.search(r"longest transaction (\d+) ms", done.stdout)
        print(f"clean-up: {rows:,} rows (runs and task instances) in {seconds:.1f} s: "
              f"{rows / seconds:,.0f} rows/s; longest transaction "
              f"{longest.group(1) if longest else '?'} ms")  # fmt: skip
        print(describe("trigger, during the clean", during))
        store.close()
        print(f"file: {size / 2**20:.0f} MiB before, {os.path.getsize(path) / 2**20:.0f} MiB after")


if __name__ == "__main__":
    main()
