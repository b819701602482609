"""The Celery part of ``bench_scaleout.py``: 1,000 short tasks through 1, 2 and 4
``pipeline-core worker`` processes on Redis, against the same DAG in the local worker pool,
all on one PostgreSQL database."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from pipeline_core.engine.remote import RemoteControl
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store import open_store
from pipeline_core.store.types import Pool

TASKS = 1000
MODULE = "def tiny():\n    return None\n"


def _dag(executor: str) -> str:
    tasks = "".join(
        f"  t{i}: {{type: python, callable: 'bench_tasks:tiny'}}\n" for i in range(TASKS)
    )
    return (
        f"dag_id: many\nconcurrency: {TASKS}\ndefault_args: {{executor: {executor}, pool: wide}}\n"
        f"tasks:\n{tasks}"
    )


def _process(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline_core", *args],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _wait(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.01)


def one_setup(db: str, broker: str, tmp: Path, workers: int, runs: int) -> list[float]:
    """Seconds from trigger to the end of each of ``runs`` runs; ``workers`` 0 is the local
    pool (``--executor worker`` with two worker processes)."""
    folder = tmp / f"dags-{workers}"
    folder.mkdir(exist_ok=True)
    (folder / "bench_tasks.py").write_text(MODULE)
    (folder / "many.yaml").write_text(_dag("celery" if workers else "worker"))
    store = open_store(db)
    if "wide" not in {p.name for p in store.pools.list_pools()}:
        store.pools.create_pool(Pool("wide", 64, "benchmark"))
    common = ("--dags-folder", str(folder), "--db", db)
    worker_args = ("worker", *common, "--broker", broker, "--concurrency", "2")
    processes = [_process(tmp / f"worker{i}.log", *worker_args) for i in range(workers)]
    engine_args = ("--executor", "celery", "--broker", broker) if workers else ()
    scheduler_args = ("scheduler", *common, "--workers", "2", "--rescan-interval", "3600")
    processes.append(_process(tmp / "scheduler.log", *scheduler_args, "--grace", "1", *engine_args))
    try:
        _wait(lambda: len(store.heartbeats.list_heartbeats("worker")) >= workers)
        _wait(lambda: any(b.kind == "engine" for b in store.heartbeats.list_heartbeats()))
        _wait(lambda: _has_dag(store))
        control, took = RemoteControl(store), []
        for i in range(runs):
            run_id = f"w{workers}-{i}-{time.time_ns()}"
            start = time.perf_counter()
            control.trigger(TriggerRequest("many", run_id=run_id))
            _wait(lambda: store.runs.get_run("many", run_id).state in FINISHED_RUN_STATES, 300)
            took.append(time.perf_counter() - start)
            assert store.runs.get_run("many", run_id).state.value == "success"
        return took
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
        store.close()


def _has_dag(store) -> bool:  # type: ignore[no-untyped-def]
    from pipeline_core.errors import NotFound

    try:
        store.dags.get_dag("many")
    except NotFound:
        return False
    return True


def report(db_for, broker: str, tmp: Path, repeat: int) -> None:  # type: ignore[no-untyped-def]
    """``db_for(label)``: a fresh database URL per setup."""
    results: dict[int, list[float]] = {}
    for workers in (0, 1, 2, 4):
        results[workers] = one_setup(db_for(f"w{workers}"), broker, tmp, workers, repeat)
    local = statistics.median(results[0])
    for workers, took in results.items():
        median = statistics.median(took)
        label = (
            "local worker pool (2 processes)" if not workers else f"{workers} Celery worker(s) x 2"
        )
        extra = (
            "" if not workers else f", +{(median - local) / TASKS * 1000:.2f} ms/task over local"
        )
        print(
            f"1,000 short tasks, {label:<32}: median {median:.2f} s, "
            f"{TASKS / median:,.0f} tasks/s{extra} ({len(took)} runs)"
        )
