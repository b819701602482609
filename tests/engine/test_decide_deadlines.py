"""Deadlines in the engine's core: a running run's deadline is a timer; when it comes, a run
still going is recorded as having missed it (and cancelled if its DAG says so); a run taken
over after a restart gets its timer from its stored start, at once if it has passed."""

from __future__ import annotations

from datetime import timedelta

from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import DeadlineDue, KillTry, Resume, RunSnapshot
from pipeline_core.model import DagRun, MissDeadline, TaskInstance
from pipeline_core.state import RunState, TaskState
from tests.engine.decide_helpers import T0, Core, at, dag


def deadlines(core: Core) -> list[tuple[float, DeadlineDue]]:
    return [(due, fire) for due, fire in core.timers() if isinstance(fire, DeadlineDue)]


def misses(core: Core) -> list[MissDeadline]:
    return [e for e in core.effects if isinstance(e, MissDeadline)]


def test_a_run_that_starts_gets_a_timer_at_its_deadline():
    d = dag(Task("a"), deadline=1800)
    core = Core(d)
    core.trigger(d, seconds=5)
    [(due, fire)] = deadlines(core)
    assert due == at(5).monotonic + 1800
    assert fire == DeadlineDue("d", "r", T0 + timedelta(seconds=1805))


def test_a_dag_without_a_deadline_sets_no_timer():
    d = dag(Task("a"))
    core = Core(d)
    core.trigger(d)
    assert deadlines(core) == []


def test_a_run_still_going_at_its_deadline_misses_it_and_goes_on():
    d = dag(Task("a"), deadline=60)
    core = Core(d)
    core.trigger(d)
    [(_, fire)] = deadlines(core)
    core.send(fire, 60)
    assert misses(core) == [MissDeadline("d", "r", fire.deadline, "continue")]
    assert core.run_moves() == [] and core.moves() == []
    core.finish("a", seconds=61)
    assert core.run_moves() == ["success"]


def test_cancel_as_the_deadline_action_cancels_the_run_and_kills_its_tries():
    d = dag(Task("a"), Task("b", depends_on=("a",)), deadline=60, deadline_action="cancel")
    core = Core(d)
    core.trigger(d)
    [(_, fire)] = deadlines(core)
    core.send(fire, 60)
    assert misses(core) == [MissDeadline("d", "r", fire.deadline, "cancel")]
    assert core.run_moves() == ["cancelled"]
    assert sorted(core.moves()) == [("a", "cancelled"), ("b", "cancelled")]
    assert any(isinstance(e, KillTry) for e in core.effects)
    assert core.effects.index(misses(core)[0]) < core.effects.index(
        next(e for e in core.effects if isinstance(e, KillTry))
    )


def test_a_run_that_ended_in_time_misses_nothing():
    d = dag(Task("a"), deadline=60)
    core = Core(d)
    core.trigger(d)
    [(_, fire)] = deadlines(core)
    core.finish("a", seconds=10)
    core.send(fire, 60)
    assert core.effects == []


def taken_over(core: Core, max_tries: int) -> None:
    started = T0 - timedelta(seconds=120)
    run = DagRun("d", "r", RunState.RUNNING, "manual", started, start_date=started)
    ti = TaskInstance("d", "r", "a", TaskState.RUNNING, 1, max_tries=max_tries)
    core.send(Resume(RunSnapshot(run, (ti,))))


def test_a_run_taken_over_after_its_deadline_passed_misses_it_at_once():
    core = Core(dag(Task("a", retries=1), deadline=60))
    taken_over(core, max_tries=2)  # its orphaned try is retried: the run goes on
    assert [m.deadline for m in misses(core)] == [T0 + timedelta(seconds=-60)]
    assert deadlines(core) == []


def test_a_run_that_ends_as_it_is_taken_over_still_missed_its_deadline_first():
    core = Core(dag(Task("a"), deadline=60))
    taken_over(core, max_tries=1)  # its orphaned try fails it
    [miss] = misses(core)
    run_move = next(e for e in core.effects if type(e).__name__ == "MoveRun")
    assert core.effects.index(miss) < core.effects.index(run_move)
    assert core.run_moves() == ["failed"]


def test_cancel_after_a_restart_past_the_deadline_cancels_once():
    core = Core(dag(Task("a", retries=1), deadline=60, deadline_action="cancel"))
    taken_over(core, max_tries=2)
    [(due, fire)] = deadlines(core)
    assert due == at(0).monotonic and len(misses(core)) == 1
    core.send(fire)
    assert misses(core) == [] and core.run_moves() == ["cancelled"]
