"""The instances of one mapped task in one held run, as the core holds them. Pure."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline_core.dag.model import DAG
from pipeline_core.model import TaskInstance, TaskKey
from pipeline_core.state import FAILURE_STATES, FINISHED_TASK_STATES, TaskState

_FAILED = FAILURE_STATES | {TaskState.CANCELLED}
_NOTHING_RAN = (TaskState.SKIPPED, TaskState.REMOVED)


@dataclass
class MapGroup:
    """One mapped task's instances in one run: their states by index, and which of them
    hold a place under ``max_active`` (queued for a slot or running)."""

    parent: TaskKey
    states: list[TaskState]
    max_active: int | None = None
    unfinished: int = 0
    admitted: set[int] = field(default_factory=set)
    pending: deque[int] = field(default_factory=deque)
    #: The tasks the instances of a mapped branch chose, together.
    follow: set[str] | None = None

    @classmethod
    def of(cls, parent: TaskKey, states: list[TaskState], max_active: int | None) -> MapGroup:
        group = cls(parent, states, max_active)
        group.unfinished = sum(1 for s in states if s not in FINISHED_TASK_STATES)
        group.admitted = {i for i, s in enumerate(states) if s is TaskState.RUNNING}
        return group

    def derived(self) -> TaskState:
        """The mapped task's state once every instance has finished."""
        if any(s in _FAILED for s in self.states):
            return TaskState.FAILED
        if all(s in _NOTHING_RAN for s in self.states):
            return TaskState.SKIPPED
        return TaskState.SUCCESS

    def admit(self, index: int) -> bool:
        """Whether instance ``index`` may wait for a slot now; if not, it waits here until
        an instance of the task leaves its place."""
        if index in self.admitted:
            return False
        if self.max_active is not None and len(self.admitted) >= self.max_active:
            if index not in self.pending:
                self.pending.append(index)
            return False
        self.admitted.add(index)
        return True

    def set(self, index: int, new: TaskState) -> list[int]:
        """Record an instance's new state; returns the waiting instances that may now queue
        (their place freed)."""
        previous = self.states[index]
        self.states[index] = new
        self.unfinished += (previous in FINISHED_TASK_STATES) - (new in FINISHED_TASK_STATES)
        if new is TaskState.RUNNING or index not in self.admitted:
            return []
        self.admitted.discard(index)
        freed: list[int] = []
        while self.pending and (self.max_active is None or len(self.admitted) < self.max_active):
            waiting = self.pending.popleft()
            if self.states[waiting] is TaskState.QUEUED and waiting not in self.admitted:
                freed.append(waiting)
                break
        return freed

    def unfinished_keys(self) -> list[tuple[TaskKey, TaskState]]:
        return [
            (self.parent.instance(i), s)
            for i, s in enumerate(self.states)
            if s not in FINISHED_TASK_STATES
        ]


def groups_of(dag: DAG, instances: Iterable[TaskInstance]) -> dict[str, list[TaskInstance]]:
    """The instances of a run by mapped task id, in index order (a task the DAG no longer
    maps has none the core needs)."""
    found: dict[str, list[TaskInstance]] = {}
    for ti in instances:
        task = dag.task_dict.get(ti.task_id)
        if ti.map_index >= 0 and task is not None and task.expansion is not None:
            found.setdefault(ti.task_id, []).append(ti)
    for listed in found.values():
        listed.sort(key=lambda ti: ti.map_index)
    return found
