"""A run's move to its DAG's latest version (a retry with ``use_latest``). Pure.

A run keeps the DAG version it was made with: tasks added to the DAG later do not appear in
it, tasks removed stay. Asked to, a retry moves it to the latest version first: the tasks that
version adds are created queued, the unfinished tasks it lacks become ``removed``.
"""

from __future__ import annotations

from dataclasses import replace

from pipeline_core.dag.model import DAG
from pipeline_core.engine.core.book import RunKey
from pipeline_core.engine.core.deciding import CoreState
from pipeline_core.errors import Conflict
from pipeline_core.model import DagRun, SwitchVersion, TaskChange, TaskKey, TaskSpec
from pipeline_core.state import FINISHED_TASK_STATES, TaskState

_BUSY = (TaskState.RUNNING, TaskState.UP_FOR_RETRY)


def latest_states(run: DagRun, states: dict[str, TaskState], latest: DAG) -> dict[str, TaskState]:
    """The run's task states as the latest version would have them (nothing written):
    added tasks queued, unfinished tasks it lacks removed. ``Conflict`` when such a task
    is running (it would end in a version that does not know it)."""
    busy = sorted(t for t, s in states.items() if t not in latest.task_dict and s in _BUSY)
    if busy:
        raise Conflict(
            f"run '{run.run_id}' is running or retrying task(s) {', '.join(busy)}, which the "
            f"latest version of DAG '{run.dag_id}' does not have; retry with use_latest once "
            "they end"
        )
    moved = {t: TaskState.QUEUED for t in latest.task_dict if t not in states}
    for task_id, state in states.items():
        gone = task_id not in latest.task_dict and state not in FINISHED_TASK_STATES
        moved[task_id] = TaskState.REMOVED if gone else state
    return moved


def switch_to_latest(
    core: CoreState,
    run_key: RunKey,
    run: DagRun,
    states: dict[str, TaskState],
    tries: dict[str, tuple[int, int]],
    latest: DAG,
    requeue: list[str],
) -> DagRun:
    """Write the run's move to ``latest`` (its version, its new tasks, its removed ones) and
    update ``states`` and ``tries`` in place; the run as it is after. A held run is held in
    the new version with ``requeue`` (the tasks the retry queues) already queued, so that
    what follows them waits for them."""
    after = latest_states(run, states, latest)
    added = [t for t in latest.tasks if t.task_id not in states]
    core.book.writes.append(
        SwitchVersion(
            *run_key,
            latest.version,
            tuple(TaskSpec(t.task_id, t.pool, t.priority_weight, t.retries + 1) for t in added),
        )
    )
    for task_id, state in after.items():
        if task_id in states and state is not states[task_id]:
            core.slots.unqueue(TaskKey(*run_key, task_id))  # it may wait for a slot
            core.book.writes.append(
                TaskChange(
                    TaskKey(*run_key, task_id),
                    states[task_id],
                    state,
                    reason="not in the DAG's latest version",
                )
            )
    for task in added:
        tries[task.task_id] = (0, task.retries + 1)
    states.clear()
    states.update(after)
    run = replace(run, dag_version=latest.version)
    if run_key in core.book.trackers:
        queued = {**states, **dict.fromkeys(requeue, TaskState.QUEUED)}
        _retrack(core, run, queued, tries, latest, {t.task_id for t in added})
    return run


def _retrack(
    core: CoreState,
    run: DagRun,
    states: dict[str, TaskState],
    tries: dict[str, tuple[int, int]],
    latest: DAG,
    added: set[str],
) -> None:
    """Hold a started run in its new version. Its queued tasks that were decided already
    (waiting for a slot) are not decided again; the added ones are."""
    waiting = core.book.trackers[run.key].waiting | added
    decisions = core.book.track(run, states, tries, latest)
    core.book.trackers[run.key].waiting &= waiting
    core.queue(core.book.follow(run.key, [d for d in decisions if d[0] in waiting]))
