"""Scale-out benchmark.

* PostgreSQL task transitions per second, one per transaction and 50 per transaction, for
  this code and (``--old SRC``) older code, alternating in one run.
* Failover: two ``pipeline-core scheduler`` processes on one database, ``kill -9`` of the
  active one while a task runs, and the time until the standby has started that task again
  (its next try ``running`` in the store), on SQLite and on PostgreSQL.
* Live events across API servers: a scheduler and two ``pipeline-core api`` processes on one
  PostgreSQL database; runs triggered through one server, the event stream read from the
  other, and the delay from each event's commit to its arrival.
* Celery (``--broker``): 1,000 short tasks with 1, 2 and 4 ``pipeline-core worker``
  processes against the local worker pool, on PostgreSQL.

Run: python benchmarks/bench_scaleout.py [--repeat 3] [--pg postgresql://host/db] [--old SRC]
     [--broker redis://127.0.0.1:6379/12] [--parts transitions,failover,sse,celery]
"""

from __future__ import annotations

import argparse
import json
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
from pipeline_core.model import TriggerRequest
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
        run = RemoteControl(store).trigger(
            TriggerRequest("slow", run_id=f"r-{uuid.uuid4().hex[:8]}")
        )
        query = TaskInstanceQuery(dag_id="slow", run_id=run.run_id)

        def try_running(number: int) -> bool:
            (ti,) = store.tasks.query_task_instances(query).items
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


TRANSITIONS = """
import json, sys, time, uuid
from datetime import UTC, datetime
sys.path.insert(0, sys.argv[3])
from bench_store import transitions_per_second
from pipeline_core.state import RunState, TaskState
from pipeline_core.store import open_store
try:
    from pipeline_core.model import DagRun, MoveRun, TaskChange, TaskKey, TaskSpec, new_run
except ImportError:  # older code: the values lived in the store's types
    from pipeline_core.store.types import DagRun, TaskChange, TaskKey, TaskSpec
store = open_store(sys.argv[1])
n = int(sys.argv[2])

def triggers(count):
    # What a trigger commits: the run with 10 task instances, its move to running, and its
    # first try running; three transactions before, one call after.
    specs = [TaskSpec(f"t{i}") for i in range(10)]
    start = time.perf_counter()
    for _ in range(count):
        run_id = uuid.uuid4().hex
        first = TaskChange(TaskKey("bench_tr", run_id, "t0"), TaskState.QUEUED, TaskState.RUNNING, try_number=1)
        if hasattr(store, "apply"):
            create = new_run("bench_tr", tuple(specs), now=datetime.now(UTC), run_id=run_id)
            store.runs.apply([create, MoveRun("bench_tr", run_id, RunState.QUEUED, RunState.RUNNING), first])
        else:
            store.runs.create_run(DagRun("bench_tr", run_id, RunState.QUEUED, "manual", datetime.now(UTC)), specs)
            store.runs.transition_run("bench_tr", run_id, RunState.QUEUED, RunState.RUNNING)
            store.tasks.transition_tasks([first])
    return count / (time.perf_counter() - start)

print(json.dumps([transitions_per_second(store, n, 1), transitions_per_second(store, n, 50), triggers(n // 4)]))
store.close()
"""


def pg_transitions(pg: str, schema: str, src: str | None, n: int) -> tuple[float, float, float]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    separator = "&" if "?" in pg else "?"
    # Older code is measured with its own copy of bench_store (it imports that code's names).
    benchmarks = Path(src).parent / "benchmarks" if src else Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-c", TRANSITIONS, f"{pg}{separator}schema={schema}", str(n),
         str(benchmarks)],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    single, batched, triggers = json.loads(out.strip().splitlines()[-1])
    return single, batched, triggers


def drop_schemas(pg: str, prefix: str) -> None:
    import psycopg

    with psycopg.connect(pg, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{prefix}%",)
        ).fetchall()
        for (name,) in rows:
            connection.execute(f'DROP SCHEMA "{name}" CASCADE')


FAN = "dag_id: fan\nmax_active_runs: 100\ntasks:\n  s: {type: noop}\n" + "".join(
    f"  t{i}: {{type: noop, depends_on: [s]}}\n" for i in range(50)
)


def api_server(db: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline_core", "api", "--db", db, "--port", "0"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    port: list[int] = []

    def listening() -> bool:
        for line in log.read_text().splitlines():
            if "API on http://" in line:
                port.append(int(line.rsplit(":", 1)[1].split("/")[0]))
                return True
        return False

    wait_for(listening, 30)
    return process, port[0]


def sse_across_servers(db: str, tmp: Path, runs: int) -> list[float]:
    import http.client
    import threading
    from datetime import datetime

    folder = tmp / f"fan-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "fan.yaml").write_text(FAN)
    engine = scheduler(db, folder, tmp / "fan-scheduler.log")
    first, port_a = api_server(db, tmp / "api-a.log")
    second, port_b = api_server(db, tmp / "api-b.log")
    delays: list[float] = []
    try:
        wait_for(lambda: "scheduler running" in (tmp / "fan-scheduler.log").read_text())
        stream = http.client.HTTPConnection("127.0.0.1", port_b, timeout=60)
        stream.request("GET", "/api/v1/events?dag_id=fan&types=task.state_changed")
        response = stream.getresponse()
        expected = runs * 51 * 2
        done = threading.Event()

        def read() -> None:
            for raw in response.fp:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    sent = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                    delays.append(time.time() - sent.timestamp())
                    if len(delays) >= expected:
                        done.set()
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)  # the stream is subscribed
        trigger = http.client.HTTPConnection("127.0.0.1", port_a, timeout=30)
        for i in range(runs):
            trigger.request("POST", "/api/v1/dags/fan/runs", json.dumps({"run_id": f"f{i}"}),
                            {"Content-Type": "application/json"})  # fmt: skip
            trigger.getresponse().read()
        done.wait(120)
        stream.close()
    finally:
        for process in (engine, first, second):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
    return delays


def with_schema(pg: str, schema: str) -> str:
    return f"{pg}{'&' if '?' in pg else '?'}schema={schema}"


def part_transitions(args: argparse.Namespace) -> None:
    prefix = f"bench_{uuid.uuid4().hex[:6]}_"
    try:
        for round_ in range(args.repeat):
            for label, src in (("old", args.old), ("new", None)):
                if label == "old" and not src:
                    continue
                single, batched, triggers = pg_transitions(
                    args.pg, f"{prefix}{label}{round_}", src, args.transitions
                )
                print(
                    f"[{label}] PostgreSQL transitions/s: {single:,.0f} one per "
                    f"transaction, {batched:,.0f} fifty per transaction; "
                    f"{triggers:,.0f} triggers/s (run + start + first try)"
                )
    finally:
        drop_schemas(args.pg, prefix)


def part_failover(args: argparse.Namespace) -> None:
    prefix = f"bench_failover_{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        backends = {"sqlite": f"sqlite:///{tmp / 'failover.db'}"}
        if args.pg:
            backends["postgresql"] = with_schema(args.pg, prefix)
        try:
            for name, db in backends.items():
                times = [failover_once(db, tmp) for _ in range(args.repeat)]
                print(
                    f"failover on {name:<10}: kill -9 of the active scheduler → the standby "
                    f"runs the task again: median {statistics.median(times):.2f} s "
                    f"(min {min(times):.2f}, max {max(times):.2f}, {args.repeat} runs)"
                )
        finally:
            if args.pg:
                drop_schemas(args.pg, prefix)


def part_sse(args: argparse.Namespace) -> None:
    prefix = f"bench_sse_{uuid.uuid4().hex[:6]}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            found = sse_across_servers(with_schema(args.pg, prefix), Path(folder), 20)
    finally:
        drop_schemas(args.pg, prefix)
    delays = sorted(d * 1000 for d in found)
    if delays:
        p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
        print(
            f"SSE across two API servers (PostgreSQL): {len(delays):,} task events, commit → "
            f"received on the other server: median {statistics.median(delays):.1f} ms, "
            f"p99 {p99:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("PIPELINE_CORE_BENCH_PG"))
    parser.add_argument("--old", help="the src folder of older code to measure in the same run")
    parser.add_argument("--transitions", type=int, default=2000)
    parser.add_argument(
        "--parts", default="transitions,failover,sse,celery", help="which parts, comma-separated"
    )
    parser.add_argument("--broker", default=os.environ.get("PIPELINE_CORE_BENCH_BROKER"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    parts = set(args.parts.split(","))
    if "transitions" in parts and args.pg:
        part_transitions(args)
    if "failover" in parts:
        part_failover(args)
    if "sse" in parts and args.pg:
        part_sse(args)
    if "celery" in parts and args.pg and args.broker:
        part_celery(args)


def part_celery(args: argparse.Namespace) -> None:
    import _celery_part

    prefix = f"bench_celery_{uuid.uuid4().hex[:6]}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            _celery_part.report(
                lambda label: with_schema(args.pg, f"{prefix}_{label}"),
                args.broker,
                Path(folder),
                args.repeat,
            )
    finally:
        drop_schemas(args.pg, prefix)


if __name__ == "__main__":
    main()
