"""DAG versions in the pure core: a run keeps the version it was made with when its DAG
changes; retries use it unless asked for the latest, which adds the latest's new tasks and
removes the unfinished ones it lacks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import DagsChanged, Resume, Retry, RunSnapshot
from pipeline_core.errors import Conflict
from pipeline_core.model import SwitchVersion, TaskInstance, new_run, task_specs
from pipeline_core.state import RunState, TaskState
from tests.engine.decide_helpers import Core, at, dag

V1 = dag(Task("a"), Task("old", depends_on=("a",)), Task("b", depends_on=("old",)))
V2 = dag(Task("a"), Task("b", depends_on=("a",)), Task("new", depends_on=("b",)))


def _finished(version, states, run_id="r"):
    run = new_run("d", task_specs(version), now=at(0).wall, run_id=run_id).run
    run = replace(run, state=RunState.FAILED, dag_version=version.version)
    tis = tuple(TaskInstance("d", run_id, t, s, try_number=1) for t, s in states.items())
    return run, tis


def test_a_run_keeps_its_version_when_the_dag_changes_and_new_runs_take_the_new_one():
    core = Core(V1)
    core.trigger(V1)
    core.trigger(V1, run_id="waits")  # max_active_runs 1: it waits, made with V1 too
    core.send(DagsChanged({"d": V2}))
    core.finish("a")
    assert core.submitted() == [("old", 1)]  # removed from the DAG, still in this run
    core.finish("old")
    assert core.submitted() == [("b", 1)]
    core.finish("b")
    assert core.run_moves() == ["success", "running"]  # "new" never joined the run
    assert core.submitted() == [("a", 1)]  # the waiting run starts with its own tasks
    core.finish("a", run_id="waits")
    assert core.submitted() == [("old", 1)]
    core.trigger(V2, run_id="later")  # a run made now is of V2
    assert core.decider.book.dag_of(("d", "later")) is V2


def test_a_retry_runs_the_runs_version_which_the_resume_brought():
    core = Core(V2)
    run, tis = _finished(
        V1, {"a": TaskState.SUCCESS, "old": TaskState.FAILED, "b": TaskState.UPSTREAM_FAILED}
    )
    core.send(Retry("d", "r", snapshot=RunSnapshot(run, tis, V1)))
    assert core.moves() == [("old", "queued"), ("b", "queued"), ("old", "running")]
    core.finish("old", try_number=2)
    assert core.submitted() == [("b", 2)]
    core.finish("b", try_number=2)
    assert core.run_moves() == ["success"]


def test_use_latest_adds_the_new_tasks_and_writes_the_switch_with_the_retry():
    core = Core(V2)
    run, tis = _finished(
        V1, {"a": TaskState.SUCCESS, "old": TaskState.SUCCESS, "b": TaskState.FAILED}
    )
    reply = core.send(Retry("d", "r", snapshot=RunSnapshot(run, tis, V1), use_latest=True))
    retried, requeued = reply  # type: ignore[misc]
    assert requeued == ["b"] and retried.dag_version == V2.version
    switch = [e for e in core.effects if isinstance(e, SwitchVersion)]
    assert [(s.version, [t.task_id for t in s.tasks]) for s in switch] == [(V2.version, ["new"])]
    assert core.submitted() == [("b", 2)]  # "old" finished: it stays as it was
    core.finish("b", try_number=2)
    assert core.submitted() == [("new", 1)]
    core.finish("new")
    assert core.run_moves() == ["success"]


def test_use_latest_removes_a_queued_task_the_latest_lacks_and_refuses_a_running_one():
    core = Core(V2)
    held = {"a": TaskState.FAILED, "old": TaskState.QUEUED, "b": TaskState.QUEUED}
    run, tis = _finished(V1, held)
    core.send(Retry("d", "r", snapshot=RunSnapshot(run, tis, V1), use_latest=True))
    assert ("old", "removed") in core.moves()
    busy = Core(V2)
    run, tis = _finished(
        V1, {"a": TaskState.FAILED, "old": TaskState.RUNNING, "b": TaskState.QUEUED}
    )
    with pytest.raises(Conflict, match="old"):
        busy.send(Retry("d", "r", snapshot=RunSnapshot(run, tis, V1), use_latest=True))
    assert busy.effects == [] and busy.decider.book.writes == []


def test_use_latest_on_a_held_run_adds_the_task_without_starting_twice_what_waits():
    from pipeline_core.engine.core.messages import PoolChanged

    first = dag(Task("a"), Task("w", pool="p"))
    latest = dag(Task("a"), Task("w", pool="p"), Task("new", depends_on=("a",)))
    core = Core(first, pools={"default_pool": 16, "p": 0})
    core.trigger(first)
    core.finish("a", outcome="failed")  # w waits for its pool: the run stays running
    core.send(DagsChanged({"d": latest}))
    core.send(Retry("d", "r", task_ids=("a",), use_latest=True))
    assert core.submitted() == [("a", 2)]
    core.finish("a", try_number=2)
    assert core.submitted() == [("new", 1)]
    core.send(PoolChanged("p", 4))
    assert core.submitted() == [("w", 1)]  # once
    core.finish("new")
    core.finish("w")
    assert core.run_moves() == ["success"]


def test_a_resumed_run_of_an_old_version_runs_that_version():
    core = Core(V2)
    run = replace(
        new_run("d", task_specs(V1), now=at(0).wall, run_id="r").run,
        state=RunState.RUNNING,
        dag_version=V1.version,
    )
    tis = (
        TaskInstance("d", "r", "a", TaskState.SUCCESS, try_number=1),
        TaskInstance("d", "r", "old", TaskState.QUEUED),
        TaskInstance("d", "r", "b", TaskState.QUEUED),
    )
    core.send(Resume(RunSnapshot(run, tis, V1)))
    assert core.submitted() == [("old", 1)]
    assert core.decider.book.dag_of(("d", "r")) is V1
    core.finish("old")
    core.finish("b")
    assert core.run_moves() == ["success"]
    assert ("d", "r") not in core.decider.book.pinned
