"""The engine's decisions, driven by hand: messages and explicit moments in, effects out.

No store, executor, thread or clock: every test states the time it decides at.
"""

from __future__ import annotations

import pytest

from pipeline_core.dag.model import Task
from pipeline_core.engine.core.jobs import Result
from pipeline_core.engine.core.messages import (
    Abandon,
    Cancel,
    DagsChanged,
    Drain,
    Forget,
    KillTry,
    Pause,
    PoolChanged,
    Resume,
    Retry,
    RunSnapshot,
    SubmitTry,
    TimerFired,
    TimerKind,
    Trigger,
)
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import (
    CreateRun,
    TaskChange,
    TaskInstance,
    TaskKey,
    new_run,
    task_specs,
)
from pipeline_core.state import RunState, TaskState, TriggerRule
from tests.engine.decide_helpers import RUN, Core, at, dag


def test_a_trigger_creates_starts_and_submits_in_one_outcome_with_writes_first():
    d = dag(Task("a"), Task("b", depends_on=("a",)))
    core = Core(d)
    run = core.trigger(d)
    assert run.state is RunState.RUNNING and run.start_date == at(0).wall
    kinds = [type(e).__name__ for e in core.effects]
    assert kinds == ["CreateRun", "MoveRun", "TaskChange", "SubmitTry"]
    assert core.submitted() == [("a", 1)] and core.moves() == [("a", "running")]


def test_a_linear_chain_runs_in_order_and_the_run_succeeds():
    d = dag(Task("a"), Task("b", depends_on=("a",)), Task("c", depends_on=("b",)))
    core = Core(d)
    core.trigger(d)
    core.finish("a")
    assert core.moves() == [("a", "success"), ("b", "running")]
    core.finish("b", seconds=1)
    core.finish("c", seconds=2)
    assert core.moves() == [("c", "success")] and core.run_moves() == ["success"]
    assert not core.decider.book.knows(("d", "r"))


def test_failure_cascades_upstream_failed_and_fails_the_run():
    d = dag(Task("a"), Task("b", depends_on=("a",)), Task("c", depends_on=("b",)), Task("side"))
    core = Core(d)
    core.trigger(d)
    assert sorted(core.submitted()) == [("a", 1), ("side", 1)]
    core.finish("a", "failed", error="boom")
    assert core.moves() == [("a", "failed"), ("b", "upstream_failed"), ("c", "upstream_failed")]
    core.finish("side")
    assert core.run_moves() == ["failed"]


@pytest.mark.parametrize(
    ("rule", "outcomes", "expected"),
    [
        (TriggerRule.ALL_DONE, ("success", "failed"), "running"),
        (TriggerRule.ONE_SUCCESS, ("success",), "running"),
        (TriggerRule.ALL_FAILED, ("success", "failed"), "skipped"),
        (TriggerRule.NONE_FAILED, ("success", "failed"), "upstream_failed"),
        (TriggerRule.ONE_FAILED, ("success", "success"), "skipped"),
        (TriggerRule.ALWAYS, (), "running"),
    ],
)
def test_trigger_rules_decide_the_join(rule, outcomes, expected):
    d = dag(Task("u1"), Task("u2"), Task("j", depends_on=("u1", "u2"), trigger_rule=rule))
    core = Core(d)
    core.trigger(d)
    seen = dict(core.moves())
    for task_id, outcome in zip(("u1", "u2"), outcomes, strict=False):
        core.finish(task_id, outcome)
        seen.update(core.moves())
    assert seen["j"] == expected


def test_a_branch_skips_what_it_does_not_follow():
    d = dag(Task("br", type="branch"), Task("x", depends_on=("br",)), Task("y", depends_on=("br",)))
    core = Core(d)
    core.trigger(d)
    core.finish("br", result=Result(follow=("x",)))
    assert core.moves() == [("br", "success"), ("y", "skipped"), ("x", "running")]


def test_retries_wait_their_delay_with_exponential_backoff_and_cap():
    task = Task("a", retries=3, retry_delay=10, retry_exponential_backoff=True, max_retry_delay=25)
    d = dag(task)
    core = Core(d)
    core.trigger(d)
    key = TaskKey("d", "r", "a")
    delays = []
    for try_number, now in ((1, 0.0), (2, 100.0), (3, 200.0)):
        core.finish("a", "failed", seconds=now, try_number=try_number, error="x")
        assert core.moves() == [("a", "up_for_retry")]
        ((due, fire),) = core.timers()
        assert fire == TimerFired(TimerKind.RETRY, key, try_number)
        delays.append(due - at(now).monotonic)
        core.send(fire, seconds=now + 50)
        assert core.moves() == [("a", "queued"), ("a", "running")]
        assert core.submitted() == [("a", try_number + 1)]
    assert delays == [10, 20, 25]
    core.finish("a", "failed", seconds=300, try_number=4, error="x")
    assert core.moves() == [("a", "failed")] and core.run_moves() == ["failed"]


def test_a_stale_retry_timer_or_late_completion_changes_nothing():
    d = dag(Task("a", retries=1))
    core = Core(d)
    core.trigger(d)
    core.finish("a", try_number=7)  # not the try that runs
    assert core.effects == []
    core.finish("a", "failed", error="x")
    core.send(TimerFired(TimerKind.RETRY, TaskKey("d", "r", "a"), 5))
    assert core.effects == []


def test_a_sensor_sleeps_between_pokes_without_a_slot_and_times_out_on_budget():
    sensor = Task("s", type="sensor", timeout=100, config={"poke_interval": 30})
    d = dag(sensor, Task("other"), concurrency=1)
    core = Core(d)
    core.trigger(d)
    assert core.submitted() == [("s", 1)]
    core.finish("s", result=Result(poke_ok=False), dag_id="d", seconds=1)
    ((due, fire),) = core.timers()
    assert due == at(31).monotonic and fire.kind is TimerKind.POKE
    assert core.submitted() == [("other", 1)]  # the sleeping sensor gave its place back
    core.finish("other", seconds=2)
    core.send(fire, seconds=31)
    (submit,) = [e for e in core.effects if isinstance(e, SubmitTry)]
    assert submit.job.try_number == 1 and submit.job.timeout == pytest.approx(69)
    core.finish("s", result=Result(poke_ok=False), seconds=101)
    assert core.moves() == [("s", "failed")]
    assert core.decider.book.trackers == {}  # the run finished


def test_pools_limit_and_order_by_priority_then_arrival():
    tasks = [Task(f"t{i}", pool="p", priority_weight=w) for i, w in enumerate((1, 5, 5, 9))]
    d = dag(*tasks)
    core = Core(d, pools={"default_pool": 16, "p": 1})
    core.trigger(d)
    assert core.submitted() == [("t3", 1)]
    order = []
    for _ in range(3):
        running = [k.task_id for k in core.decider.slots.active]
        core.finish(running[0])
        order += [t for t, _ in core.submitted()]
    assert order == ["t1", "t2", "t0"]


def test_a_pool_resize_starts_waiting_tasks_at_once_and_a_deleted_pool_fails_them():
    d = dag(*[Task(f"t{i}", pool="p") for i in range(3)])
    core = Core(d, pools={"default_pool": 16, "p": 1})
    core.trigger(d)
    core.send(PoolChanged("p", 3))
    assert sorted(core.submitted()) == [("t1", 1), ("t2", 1)]
    d2 = dag(Task("w", pool="gone"), dag_id="d2")
    core.send(DagsChanged({"d": d, "d2": d2}))
    core.send(PoolChanged("gone", None))
    create = new_run("d2", task_specs(d2), now=at(0).wall, run_id="r")
    core.send(Trigger(create))
    assert core.moves() == [("w", "running"), ("w", "failed")]
    assert [e for e in core.effects if isinstance(e, TaskChange)][-1].error == (
        "pool 'gone' does not exist"
    )


def test_dag_concurrency_and_max_active_runs_hold_work_back():
    d = dag(Task("a"), Task("b"), Task("c"), concurrency=2, max_active_runs=1)
    core = Core(d)
    core.trigger(d, "r1")
    assert len(core.submitted()) == 2
    run2 = core.trigger(d, "r2", seconds=1)
    assert run2.state is RunState.QUEUED and core.submitted() == []
    for task_id in ("a", "b", "c"):
        core.finish(task_id, run_id="r1", seconds=2)
    assert core.run_moves() == ["success", "running"]  # r1 ends, r2 starts in the same step


def test_pause_holds_queued_runs_until_unpaused():
    d = dag(Task("a"))
    core = Core(d)
    core.send(Pause("d", True))
    assert core.trigger(d).state is RunState.QUEUED and core.submitted() == []
    core.send(Pause("d", False))
    assert core.run_moves() == ["running"] and core.submitted() == [("a", 1)]


def test_cancel_kills_running_tries_cancels_the_rest_and_refuses_twice():
    d = dag(Task("a"), Task("b", depends_on=("a",)))
    core = Core(d)
    core.trigger(d)
    run = core.send(Cancel("d", "r"))
    assert run.state is RunState.CANCELLED
    assert [e for e in core.effects if isinstance(e, KillTry)] == [
        KillTry(TaskKey("d", "r", "a"), 1)
    ]
    assert core.moves() == [("a", "cancelled"), ("b", "cancelled")]
    with pytest.raises(NotFound):
        core.send(Cancel("d", "r"))
    finished = RunSnapshot(run, ())
    with pytest.raises(Conflict, match="already finished"):
        core.send(Cancel("d", "r", finished))


def test_retry_requeues_failed_work_and_refuses_when_nothing_failed():
    d = dag(Task("a"), Task("b", depends_on=("a",)))
    core = Core(d)
    core.trigger(d)
    core.finish("a", "failed", error="x")
    assert core.run_moves() == ["failed"]
    stored = core.decider  # the run is forgotten: a retry arrives with the stored snapshot
    assert not stored.book.knows(("d", "r"))
    failed_run = new_run("d", task_specs(d), now=at(0).wall, run_id="r").run
    from dataclasses import replace

    failed_run = replace(failed_run, state=RunState.FAILED)
    tis = (
        TaskInstance("d", "r", "a", TaskState.FAILED, try_number=1),
        TaskInstance("d", "r", "b", TaskState.UPSTREAM_FAILED),
    )
    run, requeued = core.send(Retry("d", "r", snapshot=RunSnapshot(failed_run, tis)), seconds=5)
    assert requeued == ["a", "b"] and run.state is RunState.RUNNING
    assert core.moves() == [("a", "queued"), ("b", "queued"), ("a", "running")]
    assert core.submitted() == [("a", 2)]  # the try count goes on
    with pytest.raises(Conflict, match="no finished task"):
        core.send(Retry("d", "r"))
    with pytest.raises(NotFound, match="no task"):
        core.send(Retry("d", "r", task_ids=("zzz",)))


def test_resume_orphans_running_tries_and_retries_those_with_tries_left():
    d = dag(Task("a", retries=1, retry_delay=5), Task("b"))
    core = Core(d)
    run = new_run("d", task_specs(d), now=at(0).wall, run_id="r").run
    from dataclasses import replace

    running = replace(run, state=RunState.RUNNING)
    tis = (
        TaskInstance("d", "r", "a", RUN, try_number=1, max_tries=2),
        TaskInstance("d", "r", "b", RUN, try_number=1, max_tries=1),
    )
    core.send(Resume(RunSnapshot(running, tis)), seconds=10)
    assert core.moves() == [("a", "up_for_retry"), ("b", "failed")]
    ((due, fire),) = core.timers()
    assert due == at(15).monotonic and fire.kind is TimerKind.RETRY


def test_a_trigger_whose_commit_failed_is_forgotten_with_its_slots():
    d = dag(Task("a", pool="p"))
    core = Core(d, pools={"default_pool": 16, "p": 1})
    core.trigger(d, "r1")
    core.send(Forget("d", "r1"))
    assert not core.decider.book.knows(("d", "r1"))
    core.trigger(d, "r2")
    assert core.submitted() == [("a", 1)]  # the slot r1 held is free again


def test_drain_stops_starting_and_abandon_hands_tries_back():
    d = dag(Task("a", retries=1), Task("b"))
    core = Core(d)
    core.trigger(d)
    core.send(Drain())
    assert core.trigger(d, "r2").state is RunState.QUEUED
    core.send(Abandon())
    assert sorted(core.moves()) == [("a", "up_for_retry"), ("b", "failed")]
    assert len([e for e in core.effects if isinstance(e, KillTry)]) == 2


def test_unknown_dag_is_refused_before_anything_changes():
    core = Core()
    create = new_run("nope", (), now=at(0).wall)
    with pytest.raises(NotFound):
        core.send(Trigger(create))
    assert core.decider.book.runs == {} and not isinstance(core.effects, CreateRun)
