"""Engine benchmark on the default SQLite store, every transition persisted.

Scenarios: fan-out (start → N parallel no-ops → end), a chain of N no-ops, R concurrent runs
of a T-task fan-out, trigger → first task running, and 1,000 vs 10,000-task scaling; and
dynamic task mapping: one task mapped into 10,000 instances of a python callable against a
static fan-out of 10,000 python tasks calling it (both isolated in worker processes), and
the decision and commit of the expansion alone.
Run: python benchmarks/bench_engine.py [--repeat 5] [--mapping-only]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from pipeline_core.dag.mapping import Expansion
from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine import Engine
from pipeline_core.engine.core.decide import Decider
from pipeline_core.engine.core.jobs import Completion
from pipeline_core.engine.core.messages import (
    STORE_EFFECTS,
    DagsChanged,
    Moment,
    PoolChanged,
    Resolved,
    Trigger,
    TryCompleted,
)
from pipeline_core.model import TaskKey, TriggerRequest, new_run, task_specs
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store import open_store

SLOTS = 128


def fan_out(n: int) -> DAG:
    middle = [Task(f"t{i}", depends_on=("start",)) for i in range(n)]
    end = Task("end", depends_on=tuple(t.task_id for t in middle))
    return DAG(f"fan_{n}", (Task("start"), *middle, end), concurrency=SLOTS, max_active_runs=1000)


def chain(n: int) -> DAG:
    tasks = [Task("t0")] + [Task(f"t{i}", depends_on=(f"t{i - 1}",)) for i in range(1, n)]
    return DAG(f"chain_{n}", tuple(tasks), concurrency=SLOTS)


def python_fan_out(n: int) -> DAG:
    """start → n python tasks (``dict(x=i)``, run in worker processes) → end."""
    middle = [
        Task(f"t{i}", type="python", depends_on=("start",),
             config={"callable": "builtins:dict", "kwargs": {"x": i}})
        for i in range(n)
    ]  # fmt: skip
    end = Task("end", depends_on=tuple(t.task_id for t in middle))
    return DAG(f"static_{n}", (Task("start"), *middle, end), concurrency=SLOTS)


def mapped_fan_out(n: int) -> DAG:
    """start → one python task mapped over the run's conf (``dict(x=i)``) → end."""
    mapped = Task(
        "each", type="python", depends_on=("start",), config={"callable": "builtins:dict"},
        expansion=Expansion({"x": "{{ dag_run.conf.xs }}"}),
    )  # fmt: skip
    return DAG(f"mapped_{n}", (Task("start"), mapped, Task("end", depends_on=("each",))),
               concurrency=SLOTS)  # fmt: skip


def map_reduce(n: int) -> DAG:
    """The peers' published scenario: a list from one task, a trivial task mapped over it,
    then the sum of what its instances returned."""
    return DAG(f"map_reduce_{n}", (
        Task("make", type="python", config={"callable": "workloads:numbers", "kwargs": {"n": n}}),
        Task("each", type="python", depends_on=("make",), config={"callable": "workloads:double"},
             expansion=Expansion({"x": "{{ xcom.make.return_value }}"})),
        Task("sum", type="python", depends_on=("each",),
             config={"callable": "workloads:total",
                     "kwargs": {"values": "{{ xcom.each.return_value }}"}}),
    ), concurrency=SLOTS)  # fmt: skip


class Bench:
    def __init__(self, folder: str, dags: list[DAG]) -> None:
        self.store = open_store(f"sqlite:///{folder}/bench.db")
        self.store.pools.update_pool("default_pool", slots=SLOTS)
        self.finished: dict[tuple[str, str], float] = {}
        self.first_running: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        self.store.add_listener(self._on_events)
        self.engine = Engine(self.store, {d.dag_id: d for d in dags}).start()

    def _on_events(self, events) -> None:  # type: ignore[no-untyped-def]
        now = time.perf_counter()
        with self.cond:
            for e in events:
                key = (e.dag_id, e.run_id)
                if e.type == "task.state_changed" and e.payload["new_state"] == "running":
                    self.first_running.setdefault(key, now)
                elif e.type == "run.state_changed" and e.payload["new_state"] in {
                    s.value for s in FINISHED_RUN_STATES
                }:
                    self.finished[key] = now
            self.cond.notify_all()

    def run(
        self, dag_id: str, count: int = 1, conf: dict[str, Any] | None = None
    ) -> tuple[float, list[float]]:
        """Trigger ``count`` runs at once; wall seconds until all finished, and per-run
        trigger → first running latencies."""
        start = time.perf_counter()
        triggered = []
        for _ in range(count):
            t0 = time.perf_counter()
            run = self.engine.trigger(TriggerRequest(dag_id, conf=conf or {}))
            triggered.append(((run.dag_id, run.run_id), t0))
        with self.cond:
            self.cond.wait_for(lambda: all(k in self.finished for k, _ in triggered), timeout=600)
        wall = time.perf_counter() - start
        for key, _ in triggered:
            state = self.store.runs.get_run(*key).state.value
            assert state == "success", (key, state)
        return wall, [self.first_running[k] - t0 for k, t0 in triggered]

    def close(self) -> None:
        self.engine.stop(grace=5)
        self.store.close()


def expansion_decision(n: int, repeat: int) -> None:
    """The core deciding a 10,000-way expansion, and the store committing what it decided
    (the instances, the mapped task running, the first tries started), each the median of
    ``repeat``."""
    dag = mapped_fan_out(n)
    decide_s, commit_s = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as folder:
            store = open_store(f"sqlite:///{folder}/expand.db")
            store.pools.update_pool("default_pool", slots=SLOTS)
            core = Decider()
            now = Moment(datetime.now(UTC), time.monotonic())
            core.handle(PoolChanged("default_pool", SLOTS), now)
            core.handle(DagsChanged({dag.dag_id: dag}), now)
            run = new_run(dag.dag_id, task_specs(dag), now=now.wall, run_id="r")
            started = core.handle(Trigger(run), now).effects
            store.runs.apply([e for e in started if isinstance(e, STORE_EFFECTS)], now=now.wall)
            done = TryCompleted(Completion(TaskKey(dag.dag_id, "r", "start"), 1, "success"))
            writes = [e for e in core.handle(done, now).effects if isinstance(e, STORE_EFFECTS)]
            store.runs.apply(writes, now=now.wall)
            t0 = time.perf_counter()
            outcome = core.handle(Resolved(TaskKey(dag.dag_id, "r", "each"), count=n), now)
            t1 = time.perf_counter()
            store.runs.apply(
                [e for e in outcome.effects if isinstance(e, STORE_EFFECTS)], now=now.wall
            )
            t2 = time.perf_counter()
            store.close()
            decide_s.append(t1 - t0)
            commit_s.append(t2 - t1)
    print(
        f"expand {n:,}: decide       : {statistics.median(decide_s) * 1000:.1f} ms, "
        f"commit {statistics.median(commit_s) * 1000:.1f} ms (SQLite, median of {repeat})"
    )


def mapping(folder: str, n: int, repeat: int) -> None:
    """A mapped task against the same fan-out written out, alternating, in one engine."""
    dags = [python_fan_out(n), mapped_fan_out(n), python_fan_out(10), map_reduce(1000)]
    bench = Bench(folder, dags)
    conf = {"xs": list(range(n))}
    try:
        bench.run("static_10")  # warm the worker processes
        static, mapped = [], []
        for _ in range(repeat):
            static.append(bench.run(f"static_{n}")[0])
            mapped.append(bench.run(f"mapped_{n}", conf=conf)[0])
        static_s, mapped_s = statistics.median(static), statistics.median(mapped)
        print(f"static fan-out {n:,} python : {static_s:.2f} s  ({n / static_s:,.0f} tasks/s)")
        print(f"mapped {n:,} instances      : {mapped_s:.2f} s  ({n / mapped_s:,.0f} tasks/s)")
        print(f"mapped / static throughput : {static_s / mapped_s:.0%}")
        reduce_s = statistics.median(bench.run("map_reduce_1000")[0] for _ in range(repeat))
        print(f"1,000-way map then sum     : {reduce_s:.2f} s trigger → done")
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mapping-only", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    expansion_decision(10_000, args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        mapping(folder, 10_000, max(3, args.repeat // 2))
    if args.mapping_only:
        return
    dags = [fan_out(1000), fan_out(10_000), chain(1000), fan_out(100)]
    with tempfile.TemporaryDirectory() as folder:
        bench = Bench(folder, dags)
        try:
            bench.run("fan_100")  # warm up imports and caches
            fan = [bench.run("fan_1000")[0] for _ in range(args.repeat)]
            fan_s = statistics.median(fan)
            print(f"fan-out 1,000 no-ops     : {fan_s:.3f} s  ({1002 / fan_s:,.0f} tasks/s)")
            chain_runs = [bench.run("chain_1000")[0] for _ in range(args.repeat)]
            chain_s = statistics.median(chain_runs)
            print(
                f"chain of 1,000 no-ops    : {chain_s:.3f} s  ({chain_s / 1000 * 1000:.3f} ms per task)"
            )
            many = [bench.run("fan_100", count=100)[0] for _ in range(max(1, args.repeat // 2))]
            many_s = statistics.median(many)
            print(f"100 runs x 102 no-ops    : {many_s:.3f} s  ({100 * 102 / many_s:,.0f} tasks/s)")
            latencies = []
            for _ in range(50):
                latencies.extend(bench.run("fan_100")[1])
            print(
                f"trigger → first running  : median {statistics.median(latencies) * 1000:.2f} ms, "
                f"max {max(latencies) * 1000:.2f} ms (50 runs)"
            )
            big = [bench.run("fan_10000")[0] for _ in range(max(1, args.repeat // 2))]
            big_s = statistics.median(big)
            print(f"fan-out 10,000 no-ops    : {big_s:.3f} s  ({10_002 / big_s:,.0f} tasks/s)")
            print(f"scaling 10k / 1k         : {big_s / fan_s:.1f}x the time for 10x the tasks")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
