"""Driving the engine's core by hand: a ``Decider`` with explicit moments and plain-terms
views of what it answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine.core.decide import Decider
from pipeline_core.engine.core.jobs import Completion
from pipeline_core.engine.core.messages import (
    DagsChanged,
    Moment,
    PoolChanged,
    StartTimer,
    SubmitTry,
    TimerFired,
    Trigger,
    TryCompleted,
)
from pipeline_core.model import (
    MoveRun,
    TaskChange,
    TaskKey,
    new_run,
    task_specs,
)
from pipeline_core.state import TaskState

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Q, RUN, OK, FAIL = TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCESS, TaskState.FAILED


def at(seconds: float) -> Moment:
    return Moment(T0 + timedelta(seconds=seconds), 1000.0 + seconds)


class Core:
    """A ``Decider`` with helpers that say what happened in plain terms."""

    def __init__(self, *dags: DAG, pools: dict[str, int] | None = None) -> None:
        self.decider = Decider()
        for name, slots in (pools or {"default_pool": 16}).items():
            self.decider.handle(PoolChanged(name, slots), at(0))
        self.decider.handle(DagsChanged({d.dag_id: d for d in dags}), at(0))
        self.effects: list[object] = []

    def send(self, message: object, seconds: float = 0.0) -> object:
        outcome = self.decider.handle(message, at(seconds))  # type: ignore[arg-type]
        self.effects = list(outcome.effects)
        return outcome.reply

    def trigger(self, dag: DAG, run_id: str = "r", seconds: float = 0.0, **kw: object) -> object:
        create = new_run(dag.dag_id, task_specs(dag), now=at(seconds).wall, run_id=run_id, **kw)  # type: ignore[arg-type]
        return self.send(Trigger(create), seconds)

    def finish(self, task_id: str, outcome: str = "success", seconds: float = 0.0, run_id: str = "r", try_number: int = 1, dag_id: str = "d", **kw: object) -> object:  # fmt: skip
        key = TaskKey(dag_id, run_id, task_id)
        return self.send(TryCompleted(Completion(key, try_number, outcome, **kw)), seconds)  # type: ignore[arg-type]

    def submitted(self) -> list[tuple[str, int]]:
        return [(e.job.key.task_id, e.job.try_number) for e in self.effects if isinstance(e, SubmitTry)]  # fmt: skip

    def moves(self) -> list[tuple[str, str]]:
        return [(e.key.task_id, e.new.value) for e in self.effects if isinstance(e, TaskChange)]

    def run_moves(self) -> list[str]:
        return [e.new.value for e in self.effects if isinstance(e, MoveRun)]

    def timers(self) -> list[tuple[float, TimerFired]]:
        return [(e.due, e.fire) for e in self.effects if isinstance(e, StartTimer)]


def dag(*tasks: Task, dag_id: str = "d", **kw: object) -> DAG:
    return DAG(dag_id, tasks, **kw)  # type: ignore[arg-type]
