"""Scale-out benchmark. Failover: two ``pipeline-core scheduler`` processes on one database,
``kill -9`` of the active one while a task runs, and the time until the standby has started
that task again (its next try ``running`` in the store), on SQLite and on PostgreSQL.

Run: python benchmarks/bench_scaleout.py [--repeat 3] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from pipeline_core.engine.remote import RemoteControl
from pipeline_core.store import open_store
from pipeline_core.store.types import TaskInstanceQuery

DAG = "dag_id: slow\ntasks:\n  t: {type: shell, command: 'sleep 3', retries: 3}\n"


def scheduler(db: str, folder: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline_core", "scheduler", "--dags-folder", str(folder),
             "--db", db, "--workers", "2", "--grace", "1", "--rescan-interval", "3600"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.01)


def failover_once(db: str, tmp: Path) -> float:
    folder = tmp / f"dags-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "slow.yaml").write_text(DAG)
    first_log, second_log = tmp / "first.log", tmp / "second.log"
    first = scheduler(db, folder, first_log)
    wait_for(lambda: "scheduler running" in first_log.read_text())
    second = scheduler(db, folder, second_log)
    wait_for(lambda: "standby:" in second_log.read_text())
    store = open_store(db)
    try:
        run = RemoteControl(store).trigger("slow", run_id=f"r-{uuid.uuid4().hex[:8]}")
        query = TaskInstanceQuery(dag_id="slow", run_id=run.run_id)

        def try_running(number: int) -> bool:
            (ti,) = store.query_task_instances(query).items
            return ti.state.value == "running" and ti.try_number == number

        wait_for(lambda: try_running(1))
        os.killpg(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: try_running(2))
        return time.monotonic() - killed
    finally:
        for process in (first, second):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("PIPELINE_CORE_BENCH_PG"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        backends = {"sqlite": f"sqlite:///{tmp / 'failover.db'}"}
        if args.pg:
            backends["postgresql"] = args.pg
        for name, db in backends.items():
            times = [failover_once(db, tmp) for _ in range(args.repeat)]
            print(
                f"failover on {name:<10}: kill -9 of the active scheduler → the standby runs "
                f"the task again: median {statistics.median(times):.2f} s "
                f"(min {min(times):.2f}, max {max(times):.2f}, {args.repeat} runs)"
            )


if __name__ == "__main__":
    main()
