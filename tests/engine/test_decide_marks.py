"""Marks made by hand, decided by the engine's core: a run or a task set to a state."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import KillTry, MarkRun, MarkTask, RunSnapshot
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.model import MoveRun, TaskChange, TaskInstance, TaskKey, new_run, task_specs
from pipeline_core.state import RunState, TaskState
from tests.engine.decide_helpers import Core, at, dag


def _chain() -> tuple[Core, object]:
    d = dag(Task("a"), Task("b", depends_on=("a",)), Task("c", depends_on=("b",)))
    core = Core(d)
    core.trigger(d)
    return core, d


def _failed_run(d, states):  # type: ignore[no-untyped-def]
    """Run "f" of ``d`` as the store holds it after it failed, its tasks in ``states``."""
    run = replace(
        new_run("d", task_specs(d), now=at(0).wall, run_id="f").run, state=RunState.FAILED
    )
    return run, tuple(TaskInstance("d", "f", t, s, try_number=1) for t, s in states.items())


def test_marking_a_running_run_failed_kills_its_try_and_fails_what_is_unfinished():
    core, _ = _chain()
    assert core.submitted() == [("a", 1)]
    run = core.send(MarkRun("d", "r", RunState.FAILED))
    assert run.state is RunState.FAILED  # type: ignore[attr-defined]
    assert [e for e in core.effects if isinstance(e, KillTry)] == [
        KillTry(TaskKey("d", "r", "a"), 1)
    ]
    assert core.moves() == [("a", "failed"), ("b", "failed"), ("c", "failed")]
    assert all(e.by_hand for e in core.effects if isinstance(e, TaskChange | MoveRun))
    assert core.run_moves() == ["failed"]
    core.finish("a", "cancelled")  # the killed try's late report changes nothing
    assert core.effects == []


def test_marking_a_run_success_marks_failed_and_unfinished_tasks_but_keeps_skips():
    core, d = _chain()
    run, tis = _failed_run(
        d, {"a": TaskState.SUCCESS, "b": TaskState.FAILED, "c": TaskState.UPSTREAM_FAILED}
    )
    moved = core.send(MarkRun("d", "f", RunState.SUCCESS, RunSnapshot(run, tis)))
    assert moved.state is RunState.SUCCESS  # type: ignore[attr-defined]
    assert core.moves() == [("b", "success"), ("c", "success")]
    with pytest.raises(Conflict, match="already"):
        core.send(MarkRun("d", "f", RunState.SUCCESS, RunSnapshot(moved, tis)))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        core.send(MarkRun("d", "r", RunState.CANCELLED))
    with pytest.raises(NotFound):
        core.send(MarkRun("d", "ghost", RunState.FAILED))


def test_marking_a_running_task_success_lets_its_downstream_run():
    core, _ = _chain()
    core.send(MarkTask("d", "r", "a", TaskState.SUCCESS))
    assert [e.try_number for e in core.effects if isinstance(e, KillTry)] == [1]
    assert core.moves() == [("a", "success"), ("b", "running")]
    assert core.submitted() == [("b", 1)]
    core.send(MarkTask("d", "r", "c", TaskState.SKIPPED))  # a waiting task
    assert core.moves() == [("c", "skipped")]
    core.finish("b")
    assert core.run_moves() == ["success"]


def test_marking_a_task_failed_fails_its_downstream_by_the_trigger_rules():
    core, _ = _chain()
    core.send(MarkTask("d", "r", "a", TaskState.FAILED))
    assert core.moves() == [("a", "failed"), ("b", "upstream_failed"), ("c", "upstream_failed")]
    (change,) = [e for e in core.effects if isinstance(e, TaskChange) and e.key.task_id == "a"]
    assert change.error == "marked failed by hand"
    assert core.run_moves() == ["failed"]


def test_marking_a_task_of_a_finished_run_settles_the_run_state():
    core, d = _chain()
    run, tis = _failed_run(
        d, {"a": TaskState.SUCCESS, "b": TaskState.SUCCESS, "c": TaskState.FAILED}
    )
    moved = core.send(MarkTask("d", "f", "c", TaskState.SUCCESS, RunSnapshot(run, tis)))
    assert core.moves() == [("c", "success")] and core.run_moves() == ["success"]
    assert moved.state is RunState.SUCCESS  # type: ignore[attr-defined]
    for bad, error in (
        (MarkTask("d", "f", "ghost", TaskState.SUCCESS, RunSnapshot(run, tis)), NotFound),
        (MarkTask("d", "f", "a", TaskState.SUCCESS, RunSnapshot(run, tis)), Conflict),
        (MarkTask("d", "f", "a", TaskState.QUEUED, RunSnapshot(run, tis)), InvalidRequest),
    ):
        with pytest.raises(error):
            core.send(bad)


def test_a_task_of_a_queued_run_not_started_cannot_be_marked():
    d = dag(Task("a"), max_active_runs=1)
    core = Core(d)
    core.trigger(d, "r1")
    core.trigger(d, "r2")  # waits for r1
    with pytest.raises(Conflict, match="not started"):
        core.send(MarkTask("d", "r2", "a", TaskState.SUCCESS))
    core.send(MarkRun("d", "r2", RunState.SUCCESS))
    assert core.moves() == [("a", "success")] and core.run_moves() == ["success"]
