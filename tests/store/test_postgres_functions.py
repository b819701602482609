"""PostgreSQL's server-side functions (``store/postgres/functions.py``) re-state in PL/pgSQL
what the Python model decides (``model.apply_task_change``, ``apply_run_change`` and the
event payloads). Every move the state machine allows is written twice — through the
functions, and through the ordinary path that applies the Python model — into two schemas,
and the rows and events must come out the same."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline_core.model import (
    MoveRun,
    TaskChange,
    TaskKey,
    TaskSpec,
    TriggerRequest,
    Write,
)
from pipeline_core.state import ALLOWED, RUN_ALLOWED, RunState, TaskState
from pipeline_core.store import open_store
from pipeline_core.store.postgres.one_call import OneCallRuns, OneCallTasks
from pipeline_core.store.sql.runs import RunsSql
from pipeline_core.store.sql.tasks import TasksSql
from pipeline_core.store.types import DagRecord, EventQuery, TaskInstanceQuery
from tests.conftest import postgres_or_skip

pytestmark = pytest.mark.postgres
START = datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC)  # odd instants on purpose


@pytest.fixture(scope="module")
def stores() -> Iterator[dict[str, Any]]:
    """Two PostgreSQL stores in schemas of their own: ``functions`` writes through the
    server-side functions, ``python`` through the ordinary path."""
    import psycopg

    dsn = postgres_or_skip()
    schemas = {name: f"t_{uuid.uuid4().hex[:12]}" for name in ("functions", "python")}
    separator = "&" if "?" in dsn else "?"
    opened = {name: open_store(f"{dsn}{separator}schema={s}") for name, s in schemas.items()}
    python, functions = opened["python"], opened["functions"]
    python.runs, python.tasks = RunsSql(python.sql), TasksSql(python.sql)  # the SQL path
    assert isinstance(functions.runs, OneCallRuns) and isinstance(functions.tasks, OneCallTasks)
    database = functions.backend
    plain_call, functions.calls = database.call, []

    def call(function: str, payload: str, at: datetime) -> list[Any] | None:
        rows = plain_call(function, payload, at)
        assert rows is not None, f"{function} refused {payload}"  # it took the ordinary path
        functions.calls.append(function)
        return rows

    database.call = call
    try:
        yield opened
    finally:
        for store in opened.values():
            store.close()
        with psycopg.connect(dsn, autocommit=True) as connection:
            for schema in schemas.values():
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def path_to(target: TaskState) -> list[TaskState]:
    """The shortest walk of allowed moves from ``queued`` to ``target`` (states after it)."""
    seen, todo = {TaskState.QUEUED: [TaskState.QUEUED]}, deque([TaskState.QUEUED])
    while todo:
        state = todo.popleft()
        for following in sorted(ALLOWED[state], key=lambda s: s.value):
            if following not in seen:
                seen[following] = [*seen[state], following]
                todo.append(following)
    return seen[target][1:]


TASK_MOVES = [(a, b) for a in TaskState for b in sorted(ALLOWED[a], key=lambda s: s.value)]
RUN_MOVES = [(a, b) for a in RunState for b in sorted(RUN_ALLOWED[a], key=lambda s: s.value)]


class Twin:
    """Writes the same moves into both stores, each at the same moments."""

    def __init__(self, stores: dict[str, Any], through: str) -> None:
        self.stores, self.through = stores, through
        self.now, self.writes = START, 0
        self.run_id = f"r-{uuid.uuid4().hex[:8]}"  # the stores serve the whole module
        self.key = TaskKey("etl", self.run_id, "a")
        self.after = {name: store.events.event_bounds()[1] for name, store in stores.items()}
        for store in stores.values():
            store.clock = lambda: START
            store.dags.upsert_dag(DagRecord("etl", task_count=2))
            create = TriggerRequest("etl", {"k": [1, "é"]}, run_id=self.run_id, note="n").create(
                (TaskSpec("a", max_tries=3), TaskSpec("b")), START
            )
            store.runs.apply([create], now=START)
        stores["functions"].calls.clear()

    def write(self, *writes: Write) -> None:
        self.writes += 1
        self.now += timedelta(seconds=1, microseconds=123_457)
        for store in self.stores.values():
            store.clock = lambda at=self.now: at
            if self.through == "apply" or any(isinstance(w, MoveRun) for w in writes):
                store.runs.apply(list(writes), now=self.now)
            else:
                store.tasks.transition_tasks(list(writes))

    def move(self, old: TaskState, new: TaskState, step: int) -> None:
        error = f"boom {step}" if new in (TaskState.FAILED, TaskState.UP_FOR_RETRY) else None
        number = step if new is TaskState.RUNNING else None
        change = TaskChange(self.key, old, new, try_number=number, error=error, reason=f"r{step}")
        self.write(change)

    def same(self, *others: str) -> None:
        """The same rows and events in both stores, and the functions wrote every move."""
        rows = {
            name: (
                [
                    (
                        store.runs.get_run("etl", r),
                        store.tasks.query_task_instances(_tasks(r)).items,
                    )
                    for r in (self.run_id, *others)
                ],
                [
                    _comparable(e)
                    for e in store.events.read_events(EventQuery(self.after[name], limit=500))
                ],
            )
            for name, store in self.stores.items()
        }
        assert rows["functions"] == rows["python"]
        assert len(self.stores["functions"].calls) == self.writes


def _tasks(run_id: str) -> TaskInstanceQuery:
    return TaskInstanceQuery(dag_id="etl", run_id=run_id)


def _comparable(event: Any) -> dict[str, Any]:
    described = event.to_dict()
    described.pop("seq")
    return described


@pytest.mark.parametrize("through", ["transition_tasks", "apply"])
@pytest.mark.parametrize(("old", "new"), TASK_MOVES, ids=lambda s: s.value)
def test_every_task_move_is_the_same_through_the_functions(stores, through, old, new):
    twin = Twin(stores, through)
    state = TaskState.QUEUED
    for step, following in enumerate([*path_to(old), new], start=1):
        twin.move(state, following, step)
        state = following
    twin.same()


def test_a_batch_of_moves_with_errors_kept_and_cleared_is_the_same(stores):
    twin = Twin(stores, "apply")
    a, b = twin.key, TaskKey("etl", twin.run_id, "b")
    twin.write(
        MoveRun("etl", twin.run_id, RunState.QUEUED, RunState.RUNNING),
        TaskChange(a, TaskState.QUEUED, TaskState.RUNNING, try_number=1),
        TaskChange(b, TaskState.QUEUED, TaskState.SKIPPED, reason="branch"),
    )
    twin.write(TaskChange(a, TaskState.RUNNING, TaskState.UP_FOR_RETRY, error="first"))
    twin.write(TaskChange(a, TaskState.UP_FOR_RETRY, TaskState.FAILED))  # keeps its error
    twin.write(TaskChange(a, TaskState.FAILED, TaskState.QUEUED, max_tries=5))  # clears it
    twin.same()


@pytest.mark.parametrize(("old", "new"), RUN_MOVES, ids=lambda s: s.value)
def test_every_run_move_is_the_same_through_the_functions(stores, old, new):
    twin = Twin(stores, "apply")
    walk = {
        RunState.QUEUED: [],
        RunState.RUNNING: [RunState.RUNNING],
        RunState.SUCCESS: [RunState.RUNNING, RunState.SUCCESS],
        RunState.FAILED: [RunState.RUNNING, RunState.FAILED],
        RunState.CANCELLED: [RunState.CANCELLED],
    }[old]
    state = RunState.QUEUED
    for following in [*walk, new]:
        twin.write(MoveRun("etl", twin.run_id, state, following, reason=f"to {following.value}"))
        state = following
    twin.same()


def test_a_run_created_in_the_same_call_as_its_moves_is_the_same(stores):
    twin = Twin(stores, "apply")
    other = f"{twin.run_id}-2"
    create = TriggerRequest("etl", {"x": None}, run_id=other, run_type="scheduled").create(
        (TaskSpec("a"),), twin.now
    )
    twin.write(
        create,
        MoveRun("etl", other, RunState.QUEUED, RunState.RUNNING),
        TaskChange(TaskKey("etl", other, "a"), TaskState.QUEUED, TaskState.RUNNING, try_number=1),
    )
    twin.same(other)
    assert stores["functions"].runs.get_run("etl", other).state is RunState.RUNNING
