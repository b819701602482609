"""Flow control benchmark: what concurrency keys and rate limits cost.

- The pure core with 10,000 active keys: 10,000 runs of a one-task DAG, each run its own
  customer — a task concurrency key and a rate-limit bucket per customer — triggered, their
  tries started and completed; microseconds of decision per try, with and without limits.
- A 10,000-task fan-out of no-ops in the engine (SQLite) with a concurrency key and a rate
  limit set high, against the same fan-out without them, alternating, median of ``--repeat``.
- A rate limit of 10/s over 10 s: 101 tries, the rate from the first start to the last.
Run: python benchmarks/bench_flow.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine
from bench_engine import SLOTS, Bench

from pipeline_core.dag.flow import ConcurrencyKey, RateLimit
from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine.core.decide import Decider
from pipeline_core.engine.core.jobs import Completion
from pipeline_core.engine.core.messages import (
    DagsChanged,
    Moment,
    PoolChanged,
    Trigger,
    TryCompleted,
)
from pipeline_core.model import TaskKey, new_run, task_specs
from pipeline_core.store.types import RunQuery, TaskInstanceQuery

KEY = "{{ dag_run.conf.customer }}"
LIMITS = {
    "concurrency_key": ConcurrencyKey(KEY, 1),
    "rate_limit": RateLimit("1000000/s", burst=1_000_000, key=KEY),
}


def decisions(n: int, limited: bool) -> float:
    """Seconds the core takes to trigger ``n`` runs (one try each, all running at once, each
    under its own key) and complete them."""
    task = Task("call", **(LIMITS if limited else {}))  # type: ignore[arg-type]
    dag = DAG("calls", (task,), max_active_runs=n, concurrency=n)
    core = Decider()
    now = Moment(datetime.now(UTC), 1000.0)
    core.handle(PoolChanged("default_pool", n), now)
    core.handle(DagsChanged({"calls": dag}), now)
    creates = [
        new_run("calls", task_specs(dag), now=now.wall, run_id=f"r{i}", conf={"customer": f"c{i}"})
        for i in range(n)
    ]
    started = time.perf_counter()
    for create in creates:
        core.handle(Trigger(create), now)
    assert len(core.slots.active) == n
    for i in range(n):
        core.handle(TryCompleted(Completion(TaskKey("calls", f"r{i}", "call"), 1, "success")), now)
    return time.perf_counter() - started


def fan_out(n: int, limited: bool) -> DAG:
    extra = {"concurrency_key": ConcurrencyKey(KEY, n), "rate_limit":
             RateLimit("1000000/s", burst=n, key=KEY)} if limited else {}  # fmt: skip
    middle = [Task(f"t{i}", depends_on=("start",), **extra) for i in range(n)]  # type: ignore[arg-type]
    end = Task("end", depends_on=tuple(t.task_id for t in middle))
    name = f"fan_{'limited' if limited else 'plain'}"
    return DAG(name, (Task("start"), *middle, end), concurrency=SLOTS, max_active_runs=10)


def rated(n: int) -> DAG:
    limit = RateLimit("10/s", key="api")
    return DAG("rated", tuple(Task(f"t{i}", rate_limit=limit) for i in range(n)), concurrency=SLOTS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    n = 10_000
    plain = statistics.median(decisions(n, False) for _ in range(args.repeat))
    keyed = statistics.median(decisions(n, True) for _ in range(args.repeat))
    print(f"core, {n:,} tries without limits   : {plain / n * 1e6:.1f} µs per try")
    print(f"core, {n:,} tries, {n:,} active keys: {keyed / n * 1e6:.1f} µs per try "
          f"(+{(keyed - plain) / n * 1e6:.1f} µs)")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(folder, [fan_out(n, False), fan_out(n, True), rated(101)])
        conf = {"customer": "acme"}
        try:
            bench.run("fan_plain", conf=conf)
            walls: dict[str, list[float]] = {"fan_plain": [], "fan_limited": []}
            for rep in range(args.repeat):
                order = (
                    ["fan_plain", "fan_limited"] if rep % 2 == 0 else ["fan_limited", "fan_plain"]
                )
                for dag_id in order:
                    walls[dag_id].append(bench.run(dag_id, conf=conf)[0])
            bench.run("rated")
            runs = bench.store.runs.query_runs(RunQuery(dag_id="rated")).items
            tries = bench.store.tasks.query_task_instances(
                TaskInstanceQuery(dag_id="rated", run_id=runs[0].run_id, limit=1000)
            ).items
            starts = sorted(ti.start_date for ti in tries if ti.start_date is not None)
            span = (starts[-1] - starts[0]).total_seconds()
            print(f"rate limit 10/s, 101 tries      : {100 / span:.3f}/s over {span:.2f} s "
                  f"({(100 / span / 10 - 1) * 100:+.2f} %)")  # fmt: skip
        finally:
            bench.close()
    plain_s, limited_s = (
        statistics.median(walls["fan_plain"]),
        statistics.median(walls["fan_limited"]),
    )
    print(f"fan-out {n:,} no-ops           : {plain_s:.2f} s ({(n + 2) / plain_s:,.0f} tasks/s)")
    print(
        f"... with a key and a rate limit : {limited_s:.2f} s ({(n + 2) / limited_s:,.0f} tasks/s)"
    )
    print(f"limited / plain throughput      : {plain_s / limited_s:.0%}")


if __name__ == "__main__":
    main()
