"""What the engine's core holds and the moves every part of it makes: ``CoreState``, which
``Decider`` owns and hands to each of its parts (``runs``, ``marks``, ``tries``). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pipeline_core.dag.flow import KeyError_, names_a_try, render_key
from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine.core.book import Book, RunKey
from pipeline_core.engine.core.groups import MapGroup, groups_of
from pipeline_core.engine.core.messages import (
    DeadlineDue,
    Effect,
    Moment,
    ResolveMapping,
    RunSnapshot,
    StartTimer,
    TimerFired,
    TimerKind,
)
from pipeline_core.engine.core.slots import Slots, TryLimits
from pipeline_core.errors import NotFound
from pipeline_core.model import (
    DagRun,
    MissDeadline,
    NoteWait,
    TaskChange,
    TaskInstance,
    TaskKey,
)
from pipeline_core.state import RunState, TaskState

_EPOCH = Moment(datetime(1970, 1, 1, tzinfo=UTC), 0.0)  # replaced by every message


class CoreState:
    """The book of active runs, the slots, and what the message being handled has decided
    so far (its moment, its actions, the runs it moved)."""

    def __init__(self) -> None:
        self.book = Book()
        self.slots = Slots()
        self.draining = False
        self.now = _EPOCH
        self.actions: list[Effect] = []
        self.moved: dict[RunKey, DagRun] = {}
        #: Runs of each DAG waiting only because their concurrency key is full.
        self.queued_by_key: dict[str, int] = {}

    def start_waiting_runs(self, dag_id: str) -> None:
        """Start the oldest queued runs of ``dag_id`` that its limits allow."""
        waiting = self.book.waiting.get(dag_id)
        dag = self.book.dags.get(dag_id)
        if self.draining or not waiting or dag is None or dag_id in self.book.paused:
            return
        active = self.book.active_runs(dag_id)
        keyed = dag.run_concurrency
        passed: list[RunKey] = []  # waiting for their key: they keep their place
        while waiting and active < dag.max_active_runs:
            run_key = waiting.popleft()
            run = self.book.runs.get(run_key)
            if run is None or run.state is not RunState.QUEUED:
                continue
            if keyed is not None:
                held = self.book.keys.key(run, dag)
                if held is not None and self.book.keys.started[(dag_id, held)] >= keyed.limit:
                    passed.append(run_key)
                    self._tell_key_wait(run_key, held, keyed.limit)
                    continue
            self.book.keys.served(run_key)
            running = self.move_run(run_key, RunState.RUNNING)
            version = self.book.dag_of(run_key) or dag
            created = set(self.book.waiting_tasks.pop(run_key, version.task_dict))
            for task_id in created:
                if task_id not in version.task_dict:  # of a run made before versions
                    key = TaskKey(*run_key, task_id)
                    self.book.writes.append(
                        TaskChange(
                            key, TaskState.QUEUED, TaskState.REMOVED, reason="removed from the DAG"
                        )
                    )
            kept = [t for t in version.tasks if t.task_id in created]
            states = {t.task_id: TaskState.QUEUED for t in kept}  # a queued run never ran
            tries = {t.task_id: (0, t.retries + 1) for t in kept}
            self.track(running, states, tries)
            self.arm_deadline(running)
            active += 1
        waiting.extendleft(reversed(passed))
        if keyed is not None:
            self.queued_by_key[dag_id] = len(passed)

    def _tell_key_wait(self, run_key: RunKey, key: str, limit: int) -> None:
        """A ``flow.waiting`` event the first time a run waits for its key, naming the runs
        that hold it."""
        if run_key in self.book.keys.told:
            return
        self.book.keys.told.add(run_key)
        holders = [r.run_id for r in self.active_with_key(run_key[0], key)
                   if r.state is RunState.RUNNING][:10]  # fmt: skip
        detail = {"key": key, "limit": limit, "held_by": holders}
        self.book.writes.append(NoteWait(run_key[0], "concurrency_key", detail, run_key[1]))

    def active_with_key(self, dag_id: str, key: str) -> list[DagRun]:
        """The queued and running runs of ``dag_id`` with concurrency key ``key``, oldest
        first."""
        held = self.book.keys.held.get((dag_id, key), {})
        return [
            run
            for run_key in held
            if (run := self.book.runs[run_key]).state in (RunState.QUEUED, RunState.RUNNING)
        ]

    def arm_deadline(self, run: DagRun) -> None:
        """A timer for the deadline of a running run, if its DAG has one (at once when it
        has passed: a run taken over after a restart)."""
        dag = self.book.dag_of(run.key)
        if dag is None or dag.deadline is None or run.start_date is None:
            return
        deadline = run.start_date + timedelta(seconds=dag.deadline)
        left = (deadline - self.now.wall).total_seconds()
        if left <= 0:  # passed while no engine held the run: missed even if it ends now
            self.miss_deadline(run.key, deadline, dag.deadline_action)
            if dag.deadline_action == "continue":
                return
        due = DeadlineDue(run.dag_id, run.run_id, deadline)
        self.actions.append(StartTimer(self.now.monotonic + max(0.0, left), due))

    def miss_deadline(self, run_key: RunKey, deadline: datetime, action: str) -> None:
        """Record the miss (once per run while this core holds it; the store keeps it once
        for good)."""
        if run_key not in self.book.missed:
            self.book.missed.add(run_key)
            self.book.writes.append(MissDeadline(*run_key, deadline, action))

    def instance_states(
        self, run_key: RunKey, snapshot: RunSnapshot | None
    ) -> dict[TaskKey, TaskState]:
        """The states of a run's mapped instances, as held (or as stored)."""
        if self.book.knows(run_key):
            return {
                group.parent.instance(i): s
                for parent, group in self.book.groups.items()
                if (parent.dag_id, parent.run_id) == run_key
                for i, s in enumerate(group.states)
            }
        return {ti.key: ti.state for ti in snapshot.instances} if snapshot is not None else {}

    def run_dag(self, run_key: RunKey, snapshot: RunSnapshot | None) -> DAG | None:
        """The DAG version a run runs: as held, else as its snapshot brings it, else the
        latest."""
        if self.book.knows(run_key):
            return self.book.dag_of(run_key)
        if snapshot is not None and snapshot.dag is not None:
            return snapshot.dag
        return self.book.dags.get(run_key[0])

    def run_and_states(
        self, run_key: RunKey, snapshot: RunSnapshot | None
    ) -> tuple[DagRun, dict[str, TaskState]]:
        if self.book.knows(run_key):
            return self.book.runs[run_key], dict(self.book.states(run_key))
        if snapshot is None:
            raise NotFound(f"no run '{run_key[1]}' of DAG '{run_key[0]}'")
        return snapshot.run, {ti.task_id: ti.state for ti in snapshot.tasks}

    def track(
        self,
        run: DagRun,
        states: dict[str, TaskState],
        tries: dict[str, tuple[int, int]],
        instances: Iterable[TaskInstance] = (),
        dag: DAG | None = None,
    ) -> None:
        """Hold a started run from now on (of DAG version ``dag`` if not the one held), with
        the instances of its mapped tasks (those still queued wait for a slot again)."""
        decisions = self.book.track(run, states, tries, dag)
        dag = self.book.trackers[run.key].dag
        queued: list[TaskKey] = []
        for task_id, listed in groups_of(dag, instances).items():
            parent = TaskKey(*run.key, task_id)
            expansion = dag.task_dict[task_id].expansion
            group = self.book.groups[parent] = MapGroup.of(
                parent,
                [ti.state for ti in listed],
                expansion.max_active if expansion is not None else None,
            )
            for ti in listed:
                self.book.tries[ti.key] = (ti.try_number, ti.max_tries)
            if states[task_id] is TaskState.RUNNING:
                queued += [
                    parent.instance(i) for i, s in enumerate(group.states) if s is TaskState.QUEUED
                ]
        self.queue(self.book.follow(run.key, decisions) + queued)

    def move_run(
        self, run_key: RunKey, new: RunState, reason: str | None = None, by_hand: bool = False
    ) -> DagRun:
        moved = self.moved[run_key] = self.book.move_run(
            run_key, new, self.now.wall, reason, by_hand
        )
        return moved

    def queue(self, keys: list[TaskKey]) -> None:
        """Ready tasks wait for a slot; a ready mapped task asks for its values first, and
        its instances queue as far as its ``max_active_per_task`` lets them."""
        for key in keys:
            task = self.book.task(key)
            if key.map_index >= 0:
                group = self.book.groups.get(key.parent)
                if group is None or not group.admit(key.map_index):
                    continue
            elif task.expansion is not None:
                run_key = (key.dag_id, key.run_id)
                dag = self.book.trackers[run_key].dag
                self.actions.append(ResolveMapping(key, dag, self.book.runs[run_key]))
                continue
            try:
                limits = self.try_limits(key, task)
            except KeyError_ as exc:
                self.slots.refused.append((key, str(exc)))
                continue
            run = self.book.runs[(key.dag_id, key.run_id)]
            self.slots.queue(key, task.pool, task.priority_weight, limits, run.priority)

    def _render(self, template: str, what: str, key: TaskKey) -> str:
        """A key template for a try; one that names only the run's values is rendered once
        per run (every try of a 10,000-task fan-out shares it)."""
        run_key = (key.dag_id, key.run_id)
        values = {"task_id": key.task_id, "map_index": key.map_index}
        if names_a_try(template):
            return render_key(template, what, self.book.runs[run_key], values)
        known = self.book.keys.rendered.setdefault(run_key, {})
        rendered = known.get(template)
        if rendered is None:
            rendered = known[template] = render_key(template, what, self.book.runs[run_key], values)
        return rendered

    def try_limits(self, key: TaskKey, task: Task) -> TryLimits | None:
        """A try's concurrency key and rate-limit bucket, rendered for its run."""
        keyed, limited = task.concurrency_key, task.rate_limit
        if keyed is None and limited is None:
            return None
        concurrency = None
        if keyed is not None:
            concurrency = f"{key.dag_id}/{self._render(keyed.key, 'concurrency key', key)}"
        if limited is None:
            return TryLimits(concurrency, keyed.limit if keyed is not None else 0)
        bucket = key.task_id
        if limited.key is not None:
            bucket = self._render(limited.key, "rate limit key", key)
        return TryLimits(concurrency, keyed.limit if keyed is not None else 0,
                         f"{key.dag_id}/{bucket}", limited.per_second, limited.burst)  # fmt: skip

    def timer(self, delay: float, kind: TimerKind, key: TaskKey, try_number: int) -> None:
        self.actions.append(
            StartTimer(self.now.monotonic + delay, TimerFired(kind, key, try_number))
        )
