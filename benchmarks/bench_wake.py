"""How a process following a SQLite database learns of another process's commits: the delay
from a commit to the waiter waking, and what waiting costs while nothing happens.

A waiter process follows the log with ``wait_for_events``; this process appends events one
at a time, each carrying the monotonic time of its commit (the clock is shared by every
process of the host). Run: python benchmarks/bench_wake.py [--events 200] [--idle 5]
[--old SRC] (``--old``: the src folder of older code, measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from pipeline_core.store import open_store

WAITER = """
import json, resource, sys, time
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery
store = open_store(sys.argv[1]); events, idle = int(sys.argv[2]), float(sys.argv[3])
seen = store.events.event_bounds()[1]
store.wait_for_events(seen, 0.01)
usage = resource.getrusage(resource.RUSAGE_SELF)
cpu = usage.ru_utime + usage.ru_stime
print("ready", flush=True)
deadline = time.monotonic() + idle
while time.monotonic() < deadline:  # nothing is written meanwhile
    store.wait_for_events(seen, deadline - time.monotonic())
usage = resource.getrusage(resource.RUSAGE_SELF)
idle_cpu = usage.ru_utime + usage.ru_stime - cpu
print("idle", flush=True)
delays = []
while len(delays) < events:
    if store.wait_for_events(seen, 10):
        woke = time.monotonic()
        for event in store.events.read_events(EventQuery(after_seq=seen)):
            delays.append(woke - event.payload["at"])
            seen = event.seq
print(json.dumps({"idle_cpu": idle_cpu, "delays": delays}), flush=True)
store.close()
"""


def measure(label: str, db: str, events: int, idle: float, src: str | None) -> None:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, db, str(events), str(idle)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert waiter.stdout is not None
    assert waiter.stdout.readline().strip() == "ready"
    assert waiter.stdout.readline().strip() == "idle"
    store = open_store(db)
    for _ in range(events):
        store.events.append_event("bench.wake", {"at": time.monotonic()})
        time.sleep(0.01)  # one commit at a time: each delay is a wake-up of its own
    result = json.loads(waiter.stdout.readline())
    waiter.wait(30)
    store.close()
    delays = sorted(d * 1000 for d in result["delays"])
    p99 = delays[int(len(delays) * 0.99) - 1]
    print(
        f"[{label}] commit → waiter awake: median {statistics.median(delays):.2f} ms, "
        f"p99 {p99:.2f} ms; CPU while idle for {idle:g} s: {result['idle_cpu'] * 1000:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--old", help="the src folder of older code to measure in the same run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as folder:
        db = f"sqlite:///{folder}/wake.db"
        open_store(db).close()
        for _ in range(args.repeat):
            if args.old:
                measure("old", db, args.events, args.idle, args.old)
            measure("new", db, args.events, args.idle, None)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"(children used {usage.ru_utime + usage.ru_stime:.1f} s CPU in all)")


if __name__ == "__main__":
    main()
