"""``pipeline-core serve`` when task code misbehaves and when the server itself is killed:
crashing, hanging and cancelled tasks leave the server healthy and idle, and a ``kill -9``
during 100 concurrent runs followed by an immediate restart (what a supervisor does) leaves
no run stuck, no slot taken and no task run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.state import FINISHED_RUN_STATES, RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import RunQuery, TaskInstanceQuery
from tests.conftest import pipeline_core_process, poll_until, process_alive

pytestmark = pytest.mark.slow
T = "tests.fixtures"


class Server:
    """A ``serve`` process in a session of its own (so ``kill -9`` can take its whole group)."""

    def __init__(self, db: str, folder: Path, log: Path, *extra: str) -> None:
        self.log = log
        offset = log.stat().st_size if log.exists() else 0
        with log.open("a") as output:
            self.process = pipeline_core_process(
                "serve", "--dags-folder", str(folder), "--db", db, "--port", "0",
                "--rescan-interval", "3600", "--event-streams", "thread", *extra,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.port = 0

        def port() -> bool:
            text = log.read_text()[offset:]
            for line in text.splitlines():
                if "API on http://" in line:
                    self.port = int(line.rsplit(":", 1)[1].split("/")[0])
            assert self.process.poll() is None, text
            return self.port != 0

        poll_until(port, timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v1{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def kill_group(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


def tree_cpu_seconds(root: int) -> float:
    """CPU time used so far by ``root`` and every process below it."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        used[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        grew = bool(below)
        tree |= below
    # The zygote runs in a session of its own but is still the server's child.
    return sum(used.get(pid, 0.0) for pid in tree)


def write_dag(folder: Path, text: str, name: str = "faults") -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(textwrap.dedent(text))


def test_crashing_and_hanging_tasks_leave_the_server_healthy_and_idle(tmp_path):
    folder = tmp_path / "dags"
    write_dag(
        folder,
        f"""
        dag_id: faults
        max_active_runs: 4
        tasks:
          crash: {{type: python, callable: "os:_exit", kwargs: {{status: 3}}}}
          segfault: {{type: python, callable: "{T}:kill_self", kwargs: {{signal_number: 11}}}}
          hang: {{type: python, callable: "{T}:spin", timeout: 1s}}
          hog: {{type: python, callable: "{T}:hog_memory", kwargs: {{megabytes: 4096}},
                 memory_limit: 256MiB}}
          fine: {{type: shell, command: "echo fine"}}
        """,
    )
    write_dag(
        folder,
        f"""
        dag_id: spinner
        tasks:
          hang: {{type: python, callable: "{T}:spin_with_child",
                  kwargs: {{pid_file: "{tmp_path / "child"}"}}}}
        """,
        "spinner",
    )
    server = Server(f"sqlite:///{tmp_path / 'db.sqlite'}", folder, tmp_path / "serve.log",
                    "--grace", "1")  # fmt: skip
    try:
        run = server.call("POST", "/dags/faults/runs", {})["data"]
        path = f"/dags/faults/runs/{run['run_id']}"
        poll_until(lambda: server.call("GET", path)["data"]["state"] == "failed", timeout=30)
        tasks = {t["task_id"]: t for t in server.call("GET", f"{path}/tasks")["data"]}
        assert tasks["crash"]["error"] == "worker exited with code 3"
        assert tasks["segfault"]["error"] == "worker killed by signal 11 (SIGSEGV)"
        assert tasks["hang"]["error"] == "timed out after 1s"
        assert tasks["hog"]["error"] == "memory_limit 256MiB exceeded (MemoryError)"
        assert tasks["fine"]["state"] == "success"
        assert server.call("GET", "/health")["data"]["status"] == "healthy"
        metrics = server.call("GET", "/metrics")["data"]
        killed = {
            c["labels"]["reason"]: c["value"]
            for c in metrics["counters"]
            if c["name"] == "task.killed"
        }
        assert killed == {"crash": 2, "timeout": 1, "limit": 1}
        assert any(c["name"] == "worker.restarts" for c in metrics["counters"])
        gauges = {g["name"] for g in metrics["gauges"]}
        assert {"workers.busy", "workers.idle"} <= gauges
        # A spinning task cancelled through the API: the tree is idle again within the grace.
        spinning = server.call("POST", "/dags/spinner/runs", {})["data"]
        poll_until(lambda: (tmp_path / "child").exists() and (tmp_path / "child").read_text())
        server.call("DELETE", f"/dags/spinner/runs/{spinning['run_id']}")
        child = int((tmp_path / "child").read_text())
        poll_until(lambda: not process_alive(child), 10)  # killed within the grace
        before = tree_cpu_seconds(server.process.pid)
        time.sleep(1.0)  # a second of wall time, to measure CPU over
        assert tree_cpu_seconds(server.process.pid) - before < 0.3
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


# --- kill -9 and restart --------------------------------------------------------------------

CHAOS = """
dag_id: chaos
max_active_runs: 100
concurrency: 32
tasks:
  sh:
    type: shell
    command: "echo start >> {markers}/{{{{ run_id }}}}; sleep 0.4; echo end >> {markers}/{{{{ run_id }}}}"
    retries: 3
  py: {{type: python, callable: "{T}:track", kwargs: {{name: py, seconds: 0.2}}, retries: 3}}
  after: {{type: noop, depends_on: [sh, py], retries: 3}}
"""


def _chaos(db: str, tmp_path: Path, kills: int) -> None:
    folder, markers = tmp_path / "dags", tmp_path / "markers"
    markers.mkdir()
    write_dag(folder, CHAOS.format(markers=markers, T=T))
    log = tmp_path / "serve.log"
    server = Server(db, folder, log)
    store = open_store(db)
    try:
        for i in range(100):
            server.call("POST", "/dags/chaos/runs", {"run_id": f"run{i:03d}"})
        for _ in range(kills):
            poll_until(lambda: _count(store, "running") >= 5, timeout=30)
            server.kill_group()
            # No task process outlives its engine, so a retried try never runs beside the
            # try it replaces.
            poll_until(lambda: not _task_processes(markers), timeout=1)
            server = Server(db, folder, log)  # restarted at once, as a supervisor would
        deadline = time.monotonic() + 60
        poll_until(lambda: _unfinished(store) == 0, timeout=max(1, deadline - time.monotonic()))
        assert _count(store, "running") == 0
        pools = server.call("GET", "/pools")["data"]
        assert all(p["running_slots"] == 0 for p in pools), pools
        runs = store.runs.query_runs(RunQuery(dag_id="chaos", limit=1000)).items
        assert len(runs) == 100
        assert all(r.state is RunState.SUCCESS for r in runs), {r.state for r in runs}
        for run in runs:
            # A try killed with its engine is tried again; one whose end the engine did not
            # commit before it died is tried again too (at least once, never two at a time).
            lines = (markers / run.run_id).read_text().split()
            assert lines.count("end") >= 1 and lines[-1] == "end", (run.run_id, lines)
    finally:
        server.stop()
        store.close()
    assert "Traceback" not in log.read_text()


def _task_processes(markers: Path) -> list[str]:
    """Live processes of the chaos DAG's shell tasks (their command lines name ``markers``)."""
    found = subprocess.run(
        ["pgrep", "-f", str(markers)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [pid for pid in found if process_alive(pid)]


def _count(store: Any, state: str) -> int:
    return sum(
        1
        for ti in store.tasks.query_task_instances(
            TaskInstanceQuery(dag_id="chaos", limit=1000)
        ).items
        if ti.state.value == state
    )


def _unfinished(store: Any) -> int:
    runs = store.runs.query_runs(RunQuery(dag_id="chaos", limit=1000)).items
    return sum(1 for r in runs if r.state not in FINISHED_RUN_STATES)


def test_kill_9_during_100_runs_then_restart_three_times_on_sqlite(tmp_path):
    _chaos(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, kills=3)


@pytest.mark.postgres
def test_kill_9_during_100_runs_then_restart_on_postgres(tmp_path, pg_url):
    _chaos(pg_url, tmp_path, kills=3)


def test_sigterm_then_immediate_restart_loses_nothing_and_waits_for_nothing(tmp_path):
    folder, markers = tmp_path / "dags", tmp_path / "markers"
    markers.mkdir()
    write_dag(folder, CHAOS.format(markers=markers, T=T))
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    log = tmp_path / "serve.log"
    server = Server(db, folder, log, "--grace", "0")
    store = open_store(db)
    try:
        for i in range(20):
            server.call("POST", "/dags/chaos/runs", {"run_id": f"run{i:03d}"})
        poll_until(lambda: _count(store, "running") >= 5, timeout=30)
        server.stop()
        assert server.process.returncode == 0
        restarted = time.monotonic()
        server = Server(db, folder, log)
        poll_until(lambda: _unfinished(store) == 0, timeout=30)
        # Well before the 30 s a lease takes to expire: the clean stop released it.
        assert time.monotonic() - restarted < 20
        runs = store.runs.query_runs(RunQuery(dag_id="chaos", limit=1000)).items
        assert all(r.state is RunState.SUCCESS for r in runs)
    finally:
        server.stop()
        store.close()


@pytest.mark.parametrize("command", ["scheduler", "serve"])
def test_a_burst_of_stop_signals_still_stops_the_process(tmp_path, command):
    """A second SIGTERM while the first is handled (``timeout``, a supervisor and a user all
    asking) must not deadlock the signal handler."""
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "a.yaml").write_text("dag_id: a\ntasks:\n  t: {type: noop}\n")
    log = tmp_path / "out.log"
    extra = ("--port", "0") if command == "serve" else ()
    with log.open("w") as output:
        process = pipeline_core_process(
            command, "--dags-folder", str(folder), "--db", f"sqlite:///{tmp_path / 'db'}",
            "--workers", "1", *extra, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        poll_until(lambda: "running" in log.read_text() or "API on" in log.read_text(), 60)
        for _ in range(20):
            process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()
        assert "stopped" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
