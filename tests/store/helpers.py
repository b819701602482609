"""Small builders for store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline_core.model import DagRun, TaskChange, TaskKey, TaskSpec
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import DagRecord

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def dag(dag_id: str = "etl", **fields) -> DagRecord:  # type: ignore[no-untyped-def]
    return DagRecord(dag_id=dag_id, **fields)


def new_run(
    store, dag_id="etl", run_id="r1", *, tasks=("a", "b", "c"), day=0, run_type="manual", **fields
):  # type: ignore[no-untyped-def]
    run = DagRun(
        dag_id=dag_id,
        run_id=run_id,
        state=RunState.QUEUED,
        run_type=run_type,
        logical_date=BASE + timedelta(days=day),
        **fields,
    )
    return store.runs.create_run(run, [TaskSpec(t, max_tries=2) for t in tasks])


def key(task_id: str = "a", run_id: str = "r1", dag_id: str = "etl") -> TaskKey:
    return TaskKey(dag_id, run_id, task_id)


def move(store, task_id, expected, new, run_id="r1", **fields):  # type: ignore[no-untyped-def]
    change = TaskChange(key(task_id, run_id), TaskState(expected), TaskState(new), **fields)
    return store.tasks.transition_tasks([change])[0]


def upgrading_to_task_totals_counts_the_history(open_at) -> None:  # type: ignore[no-untyped-def]
    """Runs written at schema version 4, before the task totals existed, are counted once
    ``open_at()`` (a store at the newest version) has migrated the database."""
    old = open_at(migrate_to=4)
    for i in range(3):
        new_run(old, run_id=f"r{i}", day=i, tasks=("a", "b"))
        move(old, "a", "queued", "running", run_id=f"r{i}", try_number=1)
        move(old, "a", "running", "failed" if i == 1 else "success", run_id=f"r{i}")
    old.close()
    store = open_at()
    everything = {"since": BASE - timedelta(days=1), "until": BASE + timedelta(days=9)}
    [a] = store.tasks.task_stats("etl")
    assert (a.runs, a.failure_rate) == (3, 1 / 3)
    assert store.tasks.task_stats("etl") == store.tasks.task_stats("etl", **everything)
    store.close()
