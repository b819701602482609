"""The core's decisions on mapped tasks, driven by hand with explicit moments: a ready mapped
task asks for its values, the answer expands, skips or fails it in one outcome, instances
retry and queue on their own, and the task ends with them."""

from __future__ import annotations

from pipeline_core.dag.mapping import Expansion
from pipeline_core.dag.model import Task
from pipeline_core.engine.core.jobs import Completion
from pipeline_core.engine.core.messages import (
    Cancel,
    KillTry,
    MarkTask,
    Resolved,
    ResolveMapping,
    Resume,
    Retry,
    RunSnapshot,
    SubmitTry,
    TimerFired,
    TimerKind,
    TryCompleted,
)
from pipeline_core.model import ExpandTask, TaskInstance, TaskKey
from pipeline_core.state import RunState, TaskState
from tests.engine.decide_helpers import Core, at, dag

XS = "{{ xcom.up.return_value }}"


def mapped_dag(max_active: int | None = None, retries: int = 0) -> object:
    return dag(
        Task("up", type="python", config={"callable": "m:f"}),
        Task(
            "each",
            type="python",
            depends_on=("up",),
            retries=retries,
            retry_delay=5.0,
            config={"callable": "m:g"},
            expansion=Expansion({"x": XS}, max_active=max_active),
        ),
        Task("after", depends_on=("each",)),
    )


def instance(i: int) -> TaskKey:
    return TaskKey("d", "r", "each", i)


def complete(core: Core, key: TaskKey, outcome: str = "success", seconds: float = 0.0,
             try_number: int = 1) -> None:  # fmt: skip
    core.send(TryCompleted(Completion(key, try_number, outcome, error=outcome)), seconds)


def submitted_keys(core: Core) -> list[tuple[str, int]]:
    return [(e.job.key.task_id, e.job.key.map_index) for e in core.effects
            if isinstance(e, SubmitTry)]  # fmt: skip


def started(d: object, count: int, **kw: object) -> Core:
    """``each`` ready and answered: ``count`` instances."""
    core = Core(d)  # type: ignore[arg-type]
    core.trigger(d)  # type: ignore[arg-type]
    core.finish("up")
    requests = [e for e in core.effects if isinstance(e, ResolveMapping)]
    assert [r.key for r in requests] == [TaskKey("d", "r", "each")]
    core.send(Resolved(TaskKey("d", "r", "each"), count=count, **kw))  # type: ignore[arg-type]
    return core


def test_a_ready_mapped_task_asks_for_its_values_instead_of_a_slot() -> None:
    d = mapped_dag()
    core = Core(d)
    core.trigger(d)
    core.finish("up")
    assert core.moves() == [("up", "success")]
    assert core.submitted() == []
    (request,) = [e for e in core.effects if isinstance(e, ResolveMapping)]
    assert request.run.run_id == "r" and request.dag is d


def test_the_answer_expands_the_task_in_one_outcome_writes_first() -> None:
    core = started(mapped_dag(), 3)
    kinds = [type(e).__name__ for e in core.effects]
    assert kinds[:2] == ["TaskChange", "ExpandTask"] and set(kinds[2:]) == {
        "TaskChange",
        "SubmitTry",
    }
    (expand,) = [e for e in core.effects if isinstance(e, ExpandTask)]
    assert (expand.count, expand.first, expand.max_tries) == (3, 0, 1)
    assert core.moves()[0] == ("each", "running")
    assert submitted_keys(core) == [("each", 0), ("each", 1), ("each", 2)]


def test_the_task_ends_with_its_last_instance_and_its_downstream_follows() -> None:
    core = started(mapped_dag(), 2)
    complete(core, instance(1), seconds=1)
    assert core.moves() == [("each", "success")]  # the instance; its task still runs
    complete(core, instance(0), seconds=2)
    assert core.moves() == [("each", "success"), ("each", "success"), ("after", "running")]


def test_an_empty_list_skips_the_task_and_an_error_fails_it_without_retry() -> None:
    core = started(mapped_dag(retries=3), 0)
    assert core.moves() == [("each", "skipped"), ("after", "skipped")]
    assert core.run_moves() == ["success"]
    core = started(mapped_dag(retries=3), 0, error="expand key 'x' must be a list")
    assert core.moves() == [("each", "running"), ("each", "failed"), ("after", "upstream_failed")]
    assert core.run_moves() == ["failed"]


def test_an_instance_retries_alone_after_its_delay_and_fails_its_task_when_out_of_tries() -> None:
    core = started(mapped_dag(retries=1), 2)
    complete(core, instance(0), "failed", seconds=1)
    assert core.moves() == [("each", "up_for_retry")]
    ((due, fire),) = core.timers()
    assert due == at(6).monotonic and fire == TimerFired(TimerKind.RETRY, instance(0), 1)
    complete(core, instance(1), seconds=2)
    core.send(fire, seconds=6)
    assert submitted_keys(core) == [("each", 0)]
    complete(core, instance(0), "failed", seconds=7, try_number=2)
    assert core.moves() == [("each", "failed"), ("each", "failed"), ("after", "upstream_failed")]


def test_max_active_per_task_queues_the_rest_until_one_leaves() -> None:
    core = started(mapped_dag(max_active=2), 5)
    assert submitted_keys(core) == [("each", 0), ("each", 1)]
    complete(core, instance(0), seconds=1)
    assert submitted_keys(core) == [("each", 2)]
    complete(core, instance(1), "failed", seconds=2)
    assert submitted_keys(core) == [("each", 3)]


def test_cancel_stops_every_instance() -> None:
    core = started(mapped_dag(max_active=1), 3)
    core.send(Cancel("d", "r"), seconds=1)
    assert [e.key for e in core.effects if isinstance(e, KillTry)] == [instance(0)]
    cancelled = sorted((k, s) for k, s in core.moves() if s == "cancelled")
    assert (
        cancelled == [("after", "cancelled"), ("each", "cancelled")] + [("each", "cancelled")] * 3
    )


def test_marking_the_task_marks_its_instances_and_one_instance_alone() -> None:
    core = started(mapped_dag(), 2)
    core.send(MarkTask("d", "r", "each", TaskState.SUCCESS, map_index=1), seconds=1)
    kills = [e.key for e in core.effects if isinstance(e, KillTry)]
    assert kills == [instance(1)] and core.moves() == [("each", "success")]
    core.send(MarkTask("d", "r", "each", TaskState.FAILED), seconds=2)
    assert [e.key for e in core.effects if isinstance(e, KillTry)] == [instance(0)]
    assert core.moves() == [("each", "failed"), ("each", "failed"), ("after", "upstream_failed")]


def test_a_restarted_engine_takes_the_instances_over() -> None:
    d = mapped_dag(retries=1)
    core = Core(d)
    run = core.trigger(d)
    tis = [
        TaskInstance("d", "r", "up", TaskState.SUCCESS, 1, 1),
        TaskInstance("d", "r", "each", TaskState.RUNNING, 0, 2),
        TaskInstance("d", "r", "after", TaskState.QUEUED, 0, 1),
        TaskInstance("d", "r", "each", TaskState.SUCCESS, 1, 2, map_index=0),
        TaskInstance("d", "r", "each", TaskState.RUNNING, 1, 2, map_index=1),
        TaskInstance("d", "r", "each", TaskState.QUEUED, 0, 2, map_index=2),
    ]
    fresh = Core(d)
    fresh.send(Resume(RunSnapshot(run, tuple(tis))), seconds=10)  # type: ignore[arg-type]
    assert [e.key for e in fresh.effects if isinstance(e, KillTry)] == [instance(1)]
    moves = [(e.key.map_index, e.new.value) for e in fresh.effects if hasattr(e, "new")]
    assert (1, "up_for_retry") in moves and (2, "running") in moves
    assert not any(isinstance(e, ResolveMapping | ExpandTask) for e in fresh.effects)
    assert submitted_keys(fresh) == [("each", 2)]


def test_retrying_one_instance_runs_its_task_and_downstream_again() -> None:
    core = started(mapped_dag(), 2)
    complete(core, instance(0), seconds=1)
    complete(core, instance(1), "failed", seconds=2)
    assert core.run_moves() == ["failed"]
    snapshot_run = core.decider.state.moved.get(("d", "r"))
    tis = (
        TaskInstance("d", "r", "up", TaskState.SUCCESS, 1, 1),
        TaskInstance("d", "r", "each", TaskState.FAILED, 0, 1),
        TaskInstance("d", "r", "after", TaskState.UPSTREAM_FAILED, 0, 1),
        TaskInstance("d", "r", "each", TaskState.SUCCESS, 1, 1, map_index=0),
        TaskInstance("d", "r", "each", TaskState.FAILED, 1, 1, map_index=1),
    )
    snapshot = RunSnapshot(snapshot_run, tis)  # type: ignore[arg-type]
    run, requeued = core.send(Retry("d", "r", ("each",), snapshot=snapshot, map_index=1), 3)  # type: ignore[misc]
    assert requeued == ["each", "after"] and run.state is RunState.RUNNING
    assert submitted_keys(core) == [("each", 1)]
    complete(core, instance(1), seconds=4, try_number=2)
    assert core.moves() == [("each", "success"), ("each", "success"), ("after", "running")]


def test_clearing_a_mapped_task_maps_it_again_growing_or_shrinking() -> None:
    core = started(mapped_dag(), 3)
    for i in range(3):
        complete(core, instance(i), seconds=1)
    complete(core, TaskKey("d", "r", "after"), seconds=2)
    assert core.run_moves() == ["success"]
    run = core.decider.state.moved[("d", "r")]
    tis = (
        TaskInstance("d", "r", "up", TaskState.SUCCESS, 1, 1),
        TaskInstance("d", "r", "each", TaskState.SUCCESS, 0, 1),
        TaskInstance("d", "r", "after", TaskState.SUCCESS, 1, 1),
        *(TaskInstance("d", "r", "each", TaskState.SUCCESS, 1, 1, map_index=i) for i in range(3)),
    )
    core.send(Retry("d", "r", ("each",), snapshot=RunSnapshot(run, tis)), seconds=3)
    assert [type(e).__name__ for e in core.effects if isinstance(e, ResolveMapping)] == [
        "ResolveMapping"
    ]
    core.send(Resolved(TaskKey("d", "r", "each"), count=2), seconds=3)
    changes = [(e.key.map_index, e.expected.value, e.new.value) for e in core.effects
               if hasattr(e, "expected") and e.key.task_id == "each"]  # fmt: skip
    assert (0, "success", "queued") in changes and (2, "queued", "skipped") in changes
    assert not any(isinstance(e, ExpandTask) for e in core.effects)
    complete(core, instance(0), seconds=4, try_number=2)
    complete(core, instance(1), seconds=4, try_number=2)
    assert core.moves()[-1] == ("after", "running")
    core.send(Retry("d", "r", ("each",), include_downstream=False), seconds=4)  # held: grows
    core.send(Resolved(TaskKey("d", "r", "each"), count=5), seconds=4)
    (grown,) = [e for e in core.effects if isinstance(e, ExpandTask)]
    assert (grown.first, grown.count) == (3, 5)
