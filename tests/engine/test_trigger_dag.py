"""``trigger_dag`` through a real engine: a child run started with its conf, waited for while
holding no slot (one pool slot shared with the child), the outcome passed on, a retry that
finds the run it made, and a cycle of DAGs stopped at the depth limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline_core.dag.model import DAG
from pipeline_core.engine import Engine
from pipeline_core.model import TriggerRequest
from pipeline_core.scheduler.sync import dag_record
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import Pool, RunQuery, TaskInstanceQuery
from tests.engine.conftest import Harness, dag_from

PARENT = """
dag_id: parent
tasks:
  kick:
    type: trigger_dag
    dag_id: child
    conf: {for: "{{ run_id }}"}
    wait: true
    poke_interval: 0.05
    pool: one
"""
CHILD = """
dag_id: child
tasks:
  work: {type: python, callable: "tests.fixtures:fail_on", kwargs: {x: 1, bad: "{{ dag_run.conf.bad }}"}, pool: one}
"""


def child_runs(h: Harness) -> list[Any]:
    return list(h.store.runs.query_runs(RunQuery(dag_id="child", limit=100)).items)


def start(h: Harness, *texts: str) -> Engine:
    """An engine over DAGs the store knows too, as the DAGs folder's sync makes them known."""
    dags: list[DAG] = [dag_from(text) for text in texts]
    for dag in dags:
        h.store.dags.upsert_dag(dag_record(dag, datetime.now(UTC)))
        h.store.dags.set_paused(dag.dag_id, False)
    return h.start(*dags)


def test_a_parent_waits_for_its_child_without_holding_the_only_slot(harness: Harness) -> None:
    harness.store.pools.create_pool(Pool("one", 1))
    engine = start(harness, PARENT, CHILD.replace('"{{ dag_run.conf.bad }}"', "0"))
    run = engine.trigger(TriggerRequest("parent", run_id="p1"))
    assert harness.wait_run(run, timeout=30).state is RunState.SUCCESS
    (child,) = child_runs(harness)
    assert child.run_id == "triggered__p1__kick" and child.state is RunState.SUCCESS
    assert child.conf["for"] == "p1" and child.conf["triggered_by"]["dag_id"] == "parent"


def test_the_child_s_failure_fails_the_parent_and_a_retry_finds_the_same_run(
    harness: Harness,
) -> None:
    engine = start(harness, PARENT.replace("    pool: one\n", ""), CHILD.replace("pool: one", ""))
    run = engine.trigger(TriggerRequest("parent", {"bad": 1}, run_id="p2"))
    done = harness.wait_run(run, timeout=30)
    assert done.state is RunState.FAILED
    kick = harness.ti(run, "kick")
    assert kick.state is TaskState.FAILED
    assert "triggered run triggered__p2__kick of child ended failed" in kick.error
    engine.retry("parent", "p2", ["kick"])
    assert harness.wait_run(run, timeout=30).state is RunState.FAILED
    assert len(child_runs(harness)) == 1  # the same run, found again


def test_a_cycle_of_dags_triggering_each_other_stops_at_the_depth_limit(harness: Harness) -> None:
    ping = "dag_id: ping\ntasks:\n  go: {type: trigger_dag, dag_id: pong}\n"
    pong = "dag_id: pong\ntasks:\n  go: {type: trigger_dag, dag_id: ping}\n"
    engine = start(harness, ping, pong)
    engine.trigger(TriggerRequest("ping", run_id="start"))

    def failed() -> list[Any]:
        query = TaskInstanceQuery(states=(TaskState.FAILED,), limit=100)
        return list(harness.store.tasks.query_task_instances(query).items)

    harness.wait_for(lambda: bool(failed()), timeout=30)
    (stopped,) = failed()
    assert "trigger chain deeper than 10" in stopped.error and "ping → pong → ping" in stopped.error
