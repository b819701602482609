"""Executor benchmark: every mode (thread, the warm worker pool, a fresh process per try) in
one run, alternating modes between repetitions so machine noise spreads evenly.

Workloads (Windmill's orchestrator benchmark): a chain of 40 ``fibo(10)`` tasks and a chain
of 10 ``fibo(33)`` tasks, end to end in the engine and through the API of ``serve``; plus a
1,000-task fan-out of no-op python tasks, trigger → first task running, engine start-up time
and the memory of the worker processes.
Run: python benchmarks/bench_executor.py [--repeat 3] [--no-heavy]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine
from workloads import fibo

from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store import open_store
from pipeline_core.store.types import TaskInstanceQuery

MODES = ("thread", "worker", "process")
SLOTS = 128
FINISHED = {s.value for s in FINISHED_RUN_STATES}


def chain(dag_id: str, n: int, fibo_n: int) -> DAG:
    body = {"callable": "workloads:fibo", "kwargs": {"n": fibo_n}}
    tasks = [
        Task(f"t{i}", "python", depends_on=(f"t{i - 1}",) if i else (), config=body)
        for i in range(n)
    ]
    return DAG(dag_id, tuple(tasks), concurrency=SLOTS)


def fan_out(n: int) -> DAG:
    body = {"callable": "workloads:noop"}
    middle = [Task(f"t{i}", "python", depends_on=("start",), config=body) for i in range(n)]
    end = Task("end", depends_on=tuple(t.task_id for t in middle))
    return DAG("fan", (Task("start"), *middle, end), concurrency=SLOTS)


DAGS = [chain("light", 40, 10), chain("heavy", 10, 33), fan_out(1000), chain("one", 1, 1)]


class EngineBench:
    """One engine of one mode on a fresh SQLite file; times runs by their events."""

    def __init__(self, folder: str, mode: str) -> None:
        self.store = open_store(f"sqlite:///{folder}/{mode}.db")
        self.store.pools.update_pool("default_pool", slots=SLOTS)
        self.done: dict[str, float] = {}
        self.first_running: dict[str, float] = {}
        self.cond = threading.Condition()
        self.store.add_listener(self._on_events)
        settings = EngineSettings(default_executor=mode, max_workers=SLOTS)
        started = time.perf_counter()
        self.engine = Engine(self.store, {d.dag_id: d for d in DAGS}, settings=settings).start()
        self.start_s = time.perf_counter() - started
        self.last_run: dict[str, str] = {}

    def task_seconds(self, dag_id: str) -> float:
        """The summed durations of the tasks of ``dag_id``'s last run."""
        query = TaskInstanceQuery(dag_id=dag_id, run_id=self.last_run[dag_id], limit=1000)
        return (
            sum(ti.duration_ms or 0 for ti in self.store.tasks.query_task_instances(query).items)
            / 1000
        )

    def _on_events(self, events: Any) -> None:
        now = time.perf_counter()
        with self.cond:
            for e in events:
                if e.type == "task.state_changed" and e.payload["new_state"] == "running":
                    self.first_running.setdefault(e.run_id, now)
                elif e.type == "run.state_changed" and e.payload["new_state"] in FINISHED:
                    self.done[e.run_id] = now
            self.cond.notify_all()

    def run(self, dag_id: str) -> tuple[float, float]:
        """Seconds trigger → finished, and trigger → first task running."""
        start = time.perf_counter()
        run = self.engine.trigger(TriggerRequest(dag_id))
        with self.cond:
            self.cond.wait_for(lambda: run.run_id in self.done, timeout=600)
        state = self.store.runs.get_run(dag_id, run.run_id).state.value
        assert state == "success", (dag_id, state)
        self.last_run[dag_id] = run.run_id
        return self.done[run.run_id] - start, self.first_running[run.run_id] - start

    def worker_memory(self) -> tuple[int, float, float]:
        """(worker processes, median RSS MiB, median PSS MiB) of the pool's workers."""
        pool = getattr(self.engine.executor, "workers", None)
        pids = list(pool._workers) if pool is not None else []
        rss = [_smaps(pid, "Rss") for pid in pids]
        pss = [_smaps(pid, "Pss") for pid in pids]
        if not pids:
            return 0, 0.0, 0.0
        return len(pids), statistics.median(rss), statistics.median(pss)

    def close(self) -> None:
        self.engine.stop(grace=5)
        self.store.close()


def _smaps(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def write_dags(folder: str) -> Path:
    """The two chains as YAML files, for ``serve`` and ``dags test``."""
    dags = Path(folder) / "dags"
    dags.mkdir(exist_ok=True)
    for name, n, fibo_n in (("light", 40, 10), ("heavy", 10, 33)):
        lines = [f"dag_id: {name}", "tasks:"]
        for i in range(n):
            dep = f", depends_on: [t{i - 1}]" if i else ""
            lines.append(
                f'  t{i}: {{type: python, callable: "workloads:fibo", kwargs: {{n: {fibo_n}}}{dep}}}'
            )
        (dags / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    return dags


def dags_test(folder: str, mode: str, dag_id: str) -> tuple[float, float]:
    """``pipeline-core dags test``: (the run's own duration, the whole command) in seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "dags", "test", dag_id, "--dags-folder",
         str(write_dags(folder)), "--executor", mode],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    last = done.stdout.strip().splitlines()[-1]  # run ...: success in N ms
    assert ": success in " in last, last
    return int(last.rsplit(" ", 2)[1]) / 1000, wall


class ServeBench:
    """``pipeline-core serve`` with one default executor; runs triggered over HTTP."""

    def __init__(self, folder: str, mode: str) -> None:
        dags = write_dags(folder)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.log = open(Path(folder) / f"serve-{mode}.log", "w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline_core", "serve", "--dags-folder", str(dags),
             "--db", f"sqlite:///{folder}/serve-{mode}.db", "--port", "0",
             "--executor", mode, "--event-streams", "thread"],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env,
        )  # fmt: skip
        self.port = self._port()

    def _port(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.log.seek(0)
            for line in self.log.read().splitlines():
                if "API on http://" in line:
                    return int(line.rsplit(":", 1)[1].split("/")[0])
            time.sleep(0.05)
        raise RuntimeError("serve did not start")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)["data"]

    def run(self, dag_id: str) -> float:
        """Seconds from the trigger request to the run's end as the server records it."""
        while True:  # the scheduler may still be loading the folder
            try:
                start = time.perf_counter()
                run = self._call("POST", f"/dags/{dag_id}/runs", {})
                break
            except urllib.error.HTTPError:
                time.sleep(0.1)
        while True:
            got = self._call("GET", f"/dags/{dag_id}/runs/{run['run_id']}")
            if got["state"] in FINISHED:
                assert got["state"] == "success", got
                return time.perf_counter() - start
            time.sleep(0.002)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-heavy", action="store_true", help="skip the fibo(33) chain")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    compute = min(_timed(lambda: fibo(33)) for _ in range(3))
    print(
        f"fibo(33) in this process: {compute:.3f} s → the 10-task chain computes {10 * compute:.2f} s"
    )
    results: dict[str, dict[str, list[float]]] = {m: {} for m in MODES}
    memory: dict[str, tuple[int, float, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeat):
            for mode in MODES if repeat % 2 == 0 else reversed(MODES):
                _measure_engine(folder, mode, repeat, args, results[mode], memory)
                _measure_serve(folder, mode, repeat, args, results[mode])
    _report(results, memory, args)


def _measure_engine(folder: str, mode: str, repeat: int, args: Any, out: dict[str, list[float]],
                    memory: dict[str, tuple[int, float, float]]) -> None:  # fmt: skip
    bench = EngineBench(tempfile.mkdtemp(dir=folder), mode)
    try:
        bench.run("one")  # warm: imports, the DAG sent to a worker
        out.setdefault("start", []).append(bench.start_s)
        out.setdefault("light", []).append(bench.run("light")[0])
        firsts = [bench.run("one")[1] for _ in range(20)]
        out.setdefault("first", []).append(statistics.median(firsts))
        if mode != "process":  # 1,000 interpreter starts say nothing new
            out.setdefault("fan", []).append(bench.run("fan")[0])
        if not args.no_heavy and repeat == 0:
            # Compute time measured just before and after, in this process (the machine's speed
            # drifts), and the time the run spent outside its tasks.
            before = 10 * _timed(lambda: fibo(33))
            wall = bench.run("heavy")[0]
            after = 10 * _timed(lambda: fibo(33))
            out.setdefault("heavy", []).append(wall)
            out.setdefault("compute", []).append((before + after) / 2)
            out.setdefault("gap", []).append(wall - bench.task_seconds("heavy"))
        memory[mode] = bench.worker_memory()
    finally:
        bench.close()


def _measure_serve(folder: str, mode: str, repeat: int, args: Any,
                   out: dict[str, list[float]]) -> None:  # fmt: skip
    run_s, command_s = dags_test(tempfile.mkdtemp(dir=folder), mode, "light")
    out.setdefault("cli_light", []).append(run_s)
    out.setdefault("cli_wall", []).append(command_s)
    server = ServeBench(tempfile.mkdtemp(dir=folder), mode)
    try:
        server.run("light")  # warm
        out.setdefault("api_light", []).append(server.run("light"))
        if not args.no_heavy and repeat == 0:
            out.setdefault("api_heavy", []).append(server.run("heavy"))
    finally:
        server.close()


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _report(results: dict[str, dict[str, list[float]]], memory: dict[str, tuple[int, float, float]],
            args: Any) -> None:  # fmt: skip
    def med(mode: str, key: str) -> float | None:
        values = results[mode].get(key)
        return statistics.median(values) if values else None

    print(f"\nmedians of {args.repeat} runs (the fibo(33) chain: one run)")
    print(f"{'':34}" + "".join(f"{m:>12}" for m in MODES))
    rows = [
        ("engine start (s)", "start", 1, "{:.3f}"),
        ("40 x fibo(10) chain, engine (s)", "light", 1, "{:.3f}"),
        ("40 x fibo(10) chain, dags test (s)", "cli_light", 1, "{:.3f}"),
        ("  the whole dags test command (s)", "cli_wall", 1, "{:.3f}"),
        ("40 x fibo(10) chain, API (s)", "api_light", 1, "{:.3f}"),
        ("10 x fibo(33) chain, engine (s)", "heavy", 1, "{:.2f}"),
        ("10 x fibo(33) chain, API (s)", "api_heavy", 1, "{:.2f}"),
        ("1,000 no-op fan-out (tasks/s)", "fan", -1, "{:,.0f}"),
        ("trigger → first running (ms)", "first", 1000, "{:.2f}"),
    ]
    for label, key, scale, fmt in rows:
        cells = []
        for mode in MODES:
            value = med(mode, key)
            if value is None:
                cells.append(f"{'-':>12}")
            else:
                shown = 1002 / value if scale == -1 else value * scale
                cells.append(f"{fmt.format(shown):>12}")
        print(f"{label:34}" + "".join(cells))
    light_t, light_w = med("thread", "light"), med("worker", "light")
    if light_t and light_w:
        print(
            f"\nworker pool overhead per task over threads: {(light_w - light_t) / 40 * 1000:.2f} ms"
        )
    for mode in MODES:
        heavy, computed, gap = med(mode, "heavy"), med(mode, "compute"), med(mode, "gap")
        if heavy and computed and gap is not None:
            print(
                f"10 x fibo(33), {mode}: {heavy:.2f} s against {computed:.2f} s of compute measured "
                f"around it ({(heavy / computed - 1) * 100:+.1f} %); outside the tasks "
                f"{gap * 1000:.0f} ms ({gap / heavy * 100:.1f} %)"
            )
    for mode, (count, rss, pss) in memory.items():
        if count:
            print(f"{mode}: {count} worker processes, median RSS {rss:.1f} MiB, PSS {pss:.1f} MiB")


if __name__ == "__main__":
    main()
