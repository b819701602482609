"""The core's book of active runs: each run's readiness tracker and tries, the runs waiting
to start, and the writes decided so far. Pure: nothing here reads or writes the store.

Every state a task instance is moved to is recorded twice at once: as a ``TaskChange`` in
``writes`` (for the loop to commit) and in the run's tracker, whose trigger-rule tallies say
which tasks that move made ready, skipped or upstream-failed.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine.core.groups import MapGroup
from pipeline_core.engine.core.keyed import KeyedRuns
from pipeline_core.engine.core.tracker import RunTracker
from pipeline_core.model import (
    DagRun,
    MoveRun,
    TaskChange,
    TaskKey,
    Write,
    apply_run_change,
)
from pipeline_core.state import Readiness, RunState, TaskState

RunKey = tuple[str, str]


class Book:
    def __init__(self) -> None:
        self.dags: dict[str, DAG] = {}
        self.paused: set[str] = set()
        self.runs: dict[RunKey, DagRun] = {}
        self.trackers: dict[RunKey, RunTracker] = {}
        self.waiting: dict[str, deque[RunKey]] = {}
        #: The task instances each waiting run was created with (all queued).
        self.waiting_tasks: dict[RunKey, tuple[str, ...]] = {}
        #: The concurrency keys of held runs.
        self.keys = KeyedRuns()
        #: Started runs of each DAG.
        self.started: Counter[str] = Counter()
        #: (try_number, max_tries) of every task instance of a started run.
        self.tries: dict[TaskKey, tuple[int, int]] = {}
        self.writes: list[Write] = []
        #: Runs whose tasks moved since their completion was last checked.
        self.dirty: set[RunKey] = set()
        #: Runs whose missed deadline was recorded while held.
        self.missed: set[RunKey] = set()
        #: The instances of the mapped tasks of held runs, by the mapped task's own key.
        self.groups: dict[TaskKey, MapGroup] = {}
        #: The DAG version of each held run that runs another than its DAG's latest.
        self.pinned: dict[RunKey, DAG] = {}

    # --- reading --------------------------------------------------------------------------
    def knows(self, run_key: RunKey) -> bool:
        return run_key in self.runs

    def task(self, key: TaskKey) -> Task:
        tracker = self.trackers.get((key.dag_id, key.run_id))
        dag = tracker.dag if tracker is not None else self.dag_of((key.dag_id, key.run_id))
        assert dag is not None  # a held run's DAG is loaded or pinned
        return dag.task_dict[key.task_id]

    def dag_of(self, run_key: RunKey) -> DAG | None:
        """The DAG version a held run runs: its own, or its DAG's latest."""
        return self.pinned.get(run_key) or self.dags.get(run_key[0])

    def pin(self, run_key: RunKey, dag: DAG | None) -> None:
        """Hold ``dag`` as the version ``run_key`` runs (``None``: the latest)."""
        if dag is None or dag is self.dags.get(run_key[0]):
            self.pinned.pop(run_key, None)
        else:
            self.pinned[run_key] = dag

    def set_dags(self, dags: dict[str, DAG]) -> list[str]:
        """New latest definitions; held runs keep the versions they run. Returns the DAGs
        changed."""
        changed = [
            d for d, dag in self.dags.items() if dags.get(d) is not dag and dags.get(d) != dag
        ]
        for run_key in self.runs:
            if run_key[0] in changed and run_key not in self.pinned:
                self.pinned[run_key] = self.dags[run_key[0]]
        self.dags = dags
        return changed

    def state_of(self, key: TaskKey) -> TaskState | None:
        """A task instance's state (a mapped task's instance's too), if the book holds it."""
        if key.map_index >= 0:
            group = self.groups.get(key.parent)
            in_range = group is not None and key.map_index < len(group.states)
            return group.states[key.map_index] if group is not None and in_range else None
        tracker = self.trackers.get((key.dag_id, key.run_id))
        return tracker.states.get(key.task_id) if tracker is not None else None

    def states(self, run_key: RunKey) -> dict[str, TaskState]:
        """Task states of a run the book holds (a waiting run has never started a task)."""
        tracker = self.trackers.get(run_key)
        if tracker is not None:
            return tracker.states
        return dict.fromkeys(self.waiting_tasks.get(run_key, ()), TaskState.QUEUED)

    def active_runs(self, dag_id: str) -> int:
        return self.started[dag_id]

    # --- runs -------------------------------------------------------------------------------
    def enqueue(self, run: DagRun, task_ids: Iterable[str], dag: DAG | None = None) -> None:
        """Hold a queued run (created with these task instances, of DAG version ``dag`` if
        not the latest) until its DAG's limits let it start."""
        self.runs[run.key] = run
        self.pin(run.key, dag)
        rank = self.keys.rank_of(run, self.dag_of(run.key))
        self.waiting_tasks[run.key] = tuple(task_ids)
        waiting = self.waiting.setdefault(run.dag_id, deque())
        ranks = self.keys.rank
        if waiting and ranks.get(waiting[-1], rank) > rank:  # else its place is the end
            for index, held in enumerate(waiting):
                if ranks.get(held, rank) > rank:
                    waiting.insert(index, run.key)
                    return
        waiting.append(run.key)

    def move_run(
        self,
        run_key: RunKey,
        new: RunState,
        now: datetime,
        reason: str | None = None,
        by_hand: bool = False,
    ) -> DagRun:
        current = self.runs[run_key]
        moved = apply_run_change(current, current.state, new, now, by_hand=by_hand)
        self.writes.append(MoveRun(run_key[0], run_key[1], current.state, new, reason, by_hand))
        self.runs[run_key] = moved
        return moved

    def track(
        self,
        run: DagRun,
        states: dict[str, TaskState],
        tries: dict[str, tuple[int, int]],
        dag: DAG | None = None,
    ) -> list[tuple[str, Readiness]]:
        """Hold a started run from now on (task states and ``(try_number, max_tries)`` by task
        id; ``dag``: its version if another than it holds); returns its first readiness
        decisions."""
        self.runs[run.key] = run
        if dag is not None:
            self.pin(run.key, dag)
        version = self.dag_of(run.key)
        assert version is not None  # the core holds a run only with its DAG
        if run.key not in self.trackers:
            self.started[run.dag_id] += 1
            self.keys.start(run, version)
        tracker = self.trackers[run.key] = RunTracker.build(version, states)
        self.dirty.add(run.key)
        for task_id, pair in tries.items():
            self.tries[TaskKey(run.dag_id, run.run_id, task_id)] = pair
        return tracker.decide()

    def forget(self, run_key: RunKey) -> None:
        tracker = self.trackers.pop(run_key, None)
        self.runs.pop(run_key, None)
        self.pinned.pop(run_key, None)
        self.missed.discard(run_key)
        self.waiting_tasks.pop(run_key, None)
        self.dirty.discard(run_key)
        self.keys.forget(run_key, started=tracker is not None)
        if tracker is not None:
            self.started[run_key[0]] -= 1
            for task_id in tracker.states:
                key = TaskKey(run_key[0], run_key[1], task_id)
                self.tries.pop(key, None)
                group = self.groups.pop(key, None)
                for index in range(len(group.states) if group is not None else 0):
                    self.tries.pop(key.instance(index), None)
        waiting = self.waiting.get(run_key[0])
        if waiting and run_key in waiting:
            waiting.remove(run_key)

    # --- task moves ---------------------------------------------------------------------------
    def move(
        self, key: TaskKey, expected: TaskState, new: TaskState, **fields: Any
    ) -> list[TaskKey]:
        """Move a task instance, a mapped task's instance too; returns the instances the
        move made ready (an instance moved back to ``queued`` is). The last instance of a
        mapped task to finish ends the task, and its downstream follows."""
        run_key = (key.dag_id, key.run_id)
        if key.map_index < 0:
            return self.set_task(run_key, key.task_id, expected, new, **fields)
        self.writes.append(TaskChange(key, expected, new, **fields))
        self._note_tries(key, fields)
        group = self.groups.get(key.parent)
        tracker = self.trackers.get(run_key)
        if group is None or tracker is None:
            return []
        self.dirty.add(run_key)
        ready = [key.parent.instance(i) for i in group.set(key.map_index, new)]
        if new is TaskState.QUEUED:
            ready.append(key)
        if group.unfinished == 0 and tracker.states[key.task_id] is TaskState.RUNNING:
            derived = group.derived()
            failed = sum(1 for s in group.states if s is not TaskState.SUCCESS)
            note = f"{failed} of {len(group.states)} mapped instances did not succeed"
            ended = self.set_task(
                run_key,
                key.task_id,
                TaskState.RUNNING,
                derived,
                error=note if derived is TaskState.FAILED else None,
                reason="its mapped instances finished",
            )
            if group.follow is not None and derived is TaskState.SUCCESS:
                ended = self.skip_unfollowed(run_key, key.task_id, sorted(group.follow), ended)
            ready += ended
        return ready

    def _note_tries(self, key: TaskKey, fields: dict[str, Any]) -> None:
        if "try_number" in fields or "max_tries" in fields:
            tries, max_tries = self.tries.get(key, (0, 1))
            self.tries[key] = (fields.get("try_number", tries), fields.get("max_tries", max_tries))

    def set_task(
        self, run_key: RunKey, task_id: str, expected: TaskState, new: TaskState, **fields: Any
    ) -> list[TaskKey]:
        """Move a task and follow the trigger rules downstream (skips and upstream failures
        cascade here); returns the tasks the move made ready."""
        key = TaskKey(run_key[0], run_key[1], task_id)
        self.writes.append(TaskChange(key, expected, new, **fields))
        self._note_tries(key, fields)
        tracker = self.trackers.get(run_key)
        if tracker is None:
            return []
        self.dirty.add(run_key)
        return self.follow(run_key, tracker.set_state(task_id, new))

    def follow(self, run_key: RunKey, decisions: Iterable[tuple[str, Readiness]]) -> list[TaskKey]:
        """Act on readiness decisions: ready tasks are returned, the others move (and their
        own downstream is decided in turn)."""
        tracker = self.trackers[run_key]
        ready: list[TaskKey] = []
        work = deque(decisions)
        while work:
            child, decision = work.popleft()
            if decision is Readiness.READY:
                ready.append(TaskKey(run_key[0], run_key[1], child))
                continue
            outcome = TaskState.SKIPPED if decision is Readiness.SKIP else TaskState.UPSTREAM_FAILED
            key = TaskKey(run_key[0], run_key[1], child)
            self.writes.append(TaskChange(key, TaskState.QUEUED, outcome))
            self.dirty.add(run_key)
            work.extend(tracker.set_state(child, outcome))
        return ready

    def skip_unfollowed(
        self, run_key: RunKey, branch_id: str, follow: Iterable[str], ready: list[TaskKey]
    ) -> list[TaskKey]:
        """A branch chose ``follow``: its other direct downstream tasks are skipped."""
        tracker = self.trackers[run_key]
        chosen = set(follow)
        skipped = [t for t in tracker.direct_downstream(branch_id) if t not in chosen]
        ready = [k for k in ready if k.task_id not in skipped]
        for task_id in skipped:
            if tracker.states[task_id] is TaskState.QUEUED:
                ready.extend(
                    self.set_task(
                        run_key,
                        task_id,
                        TaskState.QUEUED,
                        TaskState.SKIPPED,
                        reason=f"not followed by branch '{branch_id}'",
                    )
                )
        return ready

    def take_writes(self) -> list[Write]:
        writes, self.writes = self.writes, []
        return writes


def retry_delay(task: Task, try_number: int) -> float:
    """Seconds before try ``try_number + 1``: the task's delay, doubled per try with
    exponential backoff, capped by ``max_retry_delay``."""
    delay = task.retry_delay
    if task.retry_exponential_backoff:
        delay = delay * (2 ** max(0, try_number - 1))
    if task.max_retry_delay is not None:
        delay = min(delay, task.max_retry_delay)
    return delay
