"""Crash recovery and graceful shutdown: the run survives its engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from pipeline_core.model import DagRun, TaskChange, TaskKey, TaskSpec, TriggerRequest, utcnow
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import EventQuery, RunQuery
from tests.conftest import process_alive
from tests.engine.conftest import dag_from

DAG_TEXT = """
dag_id: t
tasks:
  first: {{type: noop}}
  long:
    type: shell
    command: "echo try >> {marker}; if [ $(wc -l < {marker}) -lt 2 ]; then sleep 60; fi"
    retries: 1
    depends_on: [first]
  last: {{type: noop, depends_on: [long]}}
"""

CHILD = """
import sys, time
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.store import open_store
from pipeline_core.model import TriggerRequest
store = open_store(sys.argv[1])
dag = load_dag_text(open(sys.argv[2]).read())
engine = Engine(store, {"t": dag}, settings=EngineSettings(heartbeat_interval=0.2)).start()
run = engine.trigger(TriggerRequest("t", run_id="survivor"))
print("triggered", flush=True)
time.sleep(120)
"""


def test_sigkilled_engine_run_finishes_after_restart(harness, tmp_path):
    marker = tmp_path / "marker"
    dag_file = tmp_path / "t.yaml"
    dag_file.write_text(DAG_TEXT.format(marker=marker))
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), harness.store.path, str(dag_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "triggered"
    harness.poll(marker.exists)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    # The task's processes die with their engine: nothing of it runs on.
    harness.poll(lambda: not running_with(str(marker)), timeout=5)
    run = harness.store.runs.get_run("t", "survivor")
    assert run.state is RunState.RUNNING
    assert harness.states(run)["long"] == "running"
    # Its heartbeat is fresh, but its process is gone: the new engine takes over at once.
    started = time.monotonic()
    engine = harness.start(dag_from(DAG_TEXT.format(marker=marker)), default_executor="worker")
    assert engine is not None
    run = harness.wait_run(run)
    assert time.monotonic() - started < 10
    assert run.state is RunState.SUCCESS
    assert harness.states(run) == {"first": "success", "long": "success", "last": "success"}
    assert harness.ti(run, "long").try_number == 2
    events = harness.store.events.read_events(EventQuery(task_id="long"))
    orphaned = [e for e in events if e.payload.get("reason") == "orphaned"]
    assert len(orphaned) == 1 and orphaned[0].payload["new_state"] == "up_for_retry"


def running_with(text: str) -> bool:
    """Whether a process whose command line contains ``text`` still runs (zombies aside)."""
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True, check=False)
    return any(process_alive(pid) for pid in found.stdout.split())


def test_graceful_stop_leaves_consistent_state_and_resumes(harness, tmp_path):
    marker = tmp_path / "marker"
    dag = dag_from(DAG_TEXT.format(marker=marker))
    engine = harness.start(dag)
    run = engine.trigger(TriggerRequest("t", run_id="paused-by-stop"))
    harness.poll(marker.exists)
    engine.stop(grace=0.2)
    harness.engine = None
    assert (
        harness.store.heartbeats.list_heartbeats("engine") == []
    )  # a clean stop releases its lease
    assert harness.states(run)["long"] == "up_for_retry"
    assert harness.store.runs.get_run("t", run.run_id).state is RunState.RUNNING
    harness.start(dag)
    assert harness.wait_run(run).state is RunState.SUCCESS
    assert harness.store.runs.query_runs(RunQuery(states=(RunState.RUNNING,))).total == 0


def test_a_live_engines_runs_are_left_to_it_until_its_lease_expires(harness, tmp_path):
    dag = dag_from(
        """
        tasks:
          work: {type: noop, retries: 1}
        """
    )
    store = harness.store
    run = store.runs.create_run(
        DagRun("t", "contested", RunState.QUEUED, "manual", utcnow()),
        [TaskSpec("work", "default_pool", 1, 2)],
    )
    store.runs.transition_run("t", run.run_id, RunState.QUEUED, RunState.RUNNING)
    key = TaskKey("t", run.run_id, "work")
    store.tasks.transition_tasks(
        [TaskChange(key, TaskState.QUEUED, TaskState.RUNNING, try_number=1)]
    )
    store.heartbeats.heartbeat("engine-elsewhere", kind="engine", hostname="elsewhere", pid=1)
    harness.start(dag, heartbeat_interval=0.05, orphan_after=1.0)
    assert harness.states(run) == {"work": "running"}  # not taken while the lease holds
    run = harness.wait_run(run)  # ... and taken over once it expires
    assert run.state is RunState.SUCCESS
    assert harness.ti(run, "work").try_number == 2
