"""The engine's core, driven by hand: refused triggers, timeouts, retrying chosen tasks,
and tasks dropped from a DAG while its runs wait."""

from __future__ import annotations

import pytest

from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import (
    Forget,
    Retry,
    RunSnapshot,
    SubmitTry,
)
from pipeline_core.errors import Conflict
from pipeline_core.model import (
    TaskChange,
    TaskInstance,
    new_run,
    task_specs,
)
from pipeline_core.state import RunState, TaskState
from tests.engine.decide_helpers import Core, at, dag


def test_a_second_trigger_with_a_run_id_in_use_is_refused_and_the_first_run_goes_on():
    d = dag(Task("a"), max_active_runs=1)
    core = Core(d)
    core.trigger(d, "r")
    with pytest.raises(Conflict, match="already exists"):
        core.trigger(d, "r")
    core.send(Forget("d", "r2"))  # forgetting a run never held changes nothing
    core.finish("a")
    assert core.run_moves() == ["success"]


def test_a_timed_out_try_is_retried_like_a_failed_one_and_keeps_its_reason():
    d = dag(Task("a", retries=1, retry_delay=3, timeout=1))
    core = Core(d)
    core.trigger(d)
    (submit,) = [e for e in core.effects if isinstance(e, SubmitTry)]
    assert submit.job.timeout == 1
    core.finish("a", "timeout", seconds=1, error="timed out after 1s")
    (change,) = [e for e in core.effects if isinstance(e, TaskChange)]
    assert (change.new, change.error) == (TaskState.UP_FOR_RETRY, "timed out after 1s")
    ((due, _),) = core.timers()
    assert due == at(4).monotonic


def test_retrying_a_chosen_successful_task_requeues_it_and_its_downstream():
    d = dag(Task("a"), Task("b", depends_on=("a",)), Task("c"))
    core = Core(d)
    core.trigger(d)
    core.finish("a")
    core.finish("c")
    core.finish("b")
    assert core.run_moves() == ["success"]
    from dataclasses import replace

    run = replace(
        new_run("d", task_specs(d), now=at(0).wall, run_id="r").run, state=RunState.SUCCESS
    )
    tis = tuple(TaskInstance("d", "r", t, TaskState.SUCCESS, try_number=1) for t in "abc")
    _, requeued = core.send(Retry("d", "r", task_ids=("a",), snapshot=RunSnapshot(run, tis)))
    assert requeued == ["a", "b"]
    assert core.moves() == [("a", "queued"), ("b", "queued"), ("a", "running")]
    assert core.run_moves() == ["running"]


def test_a_run_whose_commit_was_lost_is_held_as_the_store_has_it_and_goes_on():
    from pipeline_core.engine.core.messages import Resync, RunSnapshot, SubmitTry
    from pipeline_core.model import TaskInstance
    from pipeline_core.state import RunState, TaskState

    d = dag(Task("a", pool="p"), Task("b", pool="p"))
    core = Core(d, pools={"default_pool": 16, "p": 1})
    run = core.trigger(d)
    assert core.submitted() == [("a", 1)]  # b waits for the pool's one slot
    # The commit that started a was lost: the store still has both queued.
    stored = tuple(TaskInstance("d", "r", t, TaskState.QUEUED) for t in "ab")
    core.send(Resync(RunSnapshot(run, stored)))
    submitted = [e.job.key.task_id for e in core.effects if isinstance(e, SubmitTry)]
    assert submitted == ["a"] and core.decider.slots.usage()[-1][2:] == (1, 1)
    assert run.state is RunState.RUNNING
