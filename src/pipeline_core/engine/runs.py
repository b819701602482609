"""The orchestrator's book of runs: in-memory state of every active run and the task
transitions waiting to be committed. Used only from the orchestrator thread."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from pipeline_core.dag.graph import Graph
from pipeline_core.dag.model import DAG, Task
from pipeline_core.engine.jobs import Completion
from pipeline_core.engine.tracker import RunTracker
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.metrics import Metrics
from pipeline_core.state import (
    FINISHED_TASK_STATES,
    Readiness,
    RunState,
    TaskState,
    derive_run_state,
)
from pipeline_core.store.base import Store
from pipeline_core.store.types import (
    DagRun,
    RunQuery,
    TaskChange,
    TaskInstance,
    TaskInstanceQuery,
    TaskKey,
    TaskSpec,
    iso,
    utcnow,
)

logger = logging.getLogger("pipeline_core.engine")
RunKey = tuple[str, str]
RETRYABLE = (TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED)
PAGE = 1000


class RunBook:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self.dags: dict[str, DAG] = {}
        self._runs: dict[RunKey, DagRun] = {}
        self._trackers: dict[RunKey, RunTracker] = {}
        self._waiting: dict[str, deque[RunKey]] = {}
        self._tries: dict[TaskKey, tuple[int, int]] = {}
        self._changes: list[TaskChange] = []
        self._after: list[Callable[[], None]] = []
        self._dirty: set[RunKey] = set()

    # --- reading ------------------------------------------------------------------------------
    def run(self, dag_id: str, run_id: str) -> DagRun:
        return self._runs.get((dag_id, run_id)) or self.store.get_run(dag_id, run_id)

    def knows(self, run_key: RunKey) -> bool:
        return run_key in self._runs

    def task(self, key: TaskKey) -> Task:
        tracker = self._trackers.get((key.dag_id, key.run_id))
        dag = tracker.dag if tracker is not None else self.dags[key.dag_id]
        return dag.task_dict[key.task_id]

    def task_instances(self, run_key: RunKey) -> list[TaskInstance]:
        page = self.store.query_task_instances(
            TaskInstanceQuery(dag_id=run_key[0], run_id=run_key[1], limit=1_000_000)
        )
        return list(page.items)

    def open_tasks(self, run_key: RunKey) -> list[tuple[str, TaskState]]:
        tracker = self._trackers.get(run_key)
        states = (
            tracker.states
            if tracker
            else {t.task_id: t.state for t in self.task_instances(run_key)}
        )
        return [(t, s) for t, s in states.items() if s not in FINISHED_TASK_STATES]

    def load_unfinished_runs(
        self, dag_ids: set[str]
    ) -> Iterator[tuple[DagRun, list[TaskInstance]]]:
        offset = 0
        while True:
            page = self.store.query_runs(
                RunQuery(
                    states=(RunState.RUNNING, RunState.QUEUED),
                    order_by="logical_date",
                    limit=PAGE,
                    offset=offset,
                )
            )
            for run in page.items:
                if run.dag_id in dag_ids:
                    yield run, self.task_instances((run.dag_id, run.run_id))
            if not page.has_more:
                return
            offset += PAGE

    def up_for_retry(self, run_key: RunKey) -> list[TaskInstance]:
        return [ti for ti in self.task_instances(run_key) if ti.state is TaskState.UP_FOR_RETRY]

    @property
    def pending(self) -> bool:
        return bool(self._changes or self._after)

    # --- committing -----------------------------------------------------------------------------
    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after.append(fn)

    def flush(self) -> bool:
        """Commit pending transitions in one transaction, then run the after-commit actions."""
        changes, self._changes = self._changes, []
        after, self._after = self._after, []
        if changes:
            try:
                self.store.transition_tasks(changes)
            except Conflict:
                self._apply_one_by_one(changes)
        for action in after:
            action()
        return bool(changes or after)

    def _apply_one_by_one(self, changes: list[TaskChange]) -> None:
        for change in changes:
            try:
                self.store.transition_tasks([change])
            except Conflict as exc:
                logger.error("lost a task transition (%s); resynchronising its run", exc)
                self._resync((change.key.dag_id, change.key.run_id))

    def _resync(self, run_key: RunKey) -> None:
        tracker = self._trackers.get(run_key)
        if tracker is not None:
            tis = self.task_instances(run_key)
            self._trackers[run_key] = RunTracker.build(
                tracker.dag, {t.task_id: t.state for t in tis}
            )
            for ti in tis:
                self._tries[ti.key] = (ti.try_number, ti.max_tries)

    def set_task(
        self,
        run_key: RunKey,
        task_id: str,
        expected: TaskState,
        new: TaskState,
        **fields: Any,
    ) -> list[TaskKey]:
        """Queue a transition and follow its consequences; returns tasks now ready to run."""
        key = TaskKey(run_key[0], run_key[1], task_id)
        self._changes.append(TaskChange(key, expected, new, **fields))
        if "try_number" in fields or "max_tries" in fields:
            tries, max_tries = self._tries.get(key, (0, 1))
            self._tries[key] = (fields.get("try_number", tries), fields.get("max_tries", max_tries))
        tracker = self._trackers.get(run_key)
        if tracker is None:
            return []
        self._dirty.add(run_key)
        ready: list[TaskKey] = []
        work = deque(tracker.set_state(task_id, new))
        while work:
            child, decision = work.popleft()
            if decision is Readiness.READY:
                ready.append(TaskKey(run_key[0], run_key[1], child))
                continue
            outcome = TaskState.SKIPPED if decision is Readiness.SKIP else TaskState.UPSTREAM_FAILED
            self._changes.append(
                TaskChange(TaskKey(run_key[0], run_key[1], child), TaskState.QUEUED, outcome)
            )
            work.extend(tracker.set_state(child, outcome))
        return ready

    def apply_decision(self, run_key: RunKey, task_id: str, decision: Readiness) -> list[TaskKey]:
        if decision is Readiness.READY:
            return [TaskKey(run_key[0], run_key[1], task_id)]
        outcome = TaskState.SKIPPED if decision is Readiness.SKIP else TaskState.UPSTREAM_FAILED
        return self.set_task(run_key, task_id, TaskState.QUEUED, outcome)

    # --- runs -----------------------------------------------------------------------------------
    def create_run(
        self,
        dag_id: str,
        conf: dict[str, Any],
        run_id: str | None,
        logical_date: datetime | None,
        note: str | None,
        run_type: str,
    ) -> DagRun:
        dag = self.dags.get(dag_id)
        if dag is None:
            raise NotFound(f"no DAG '{dag_id}'")
        now = utcnow()
        logical = logical_date or now
        run = DagRun(
            dag_id=dag_id,
            run_id=run_id or f"{run_type}__{iso(now if logical_date is None else logical)}",
            state=RunState.QUEUED,
            run_type=run_type,
            logical_date=logical,
            conf=conf,
            note=note,
        )
        specs = [TaskSpec(t.task_id, t.pool, t.priority_weight, t.retries + 1) for t in dag.tasks]
        run = self.store.create_run(run, specs)
        self.metrics.counter("dag_run.created", dag_id=dag_id)
        self.enqueue_run(run)
        return run

    def remove_dropped_tasks(self, dag: DAG) -> list[TaskKey]:
        """Mark tasks that ``dag`` no longer has ``removed`` in its runs that have not started
        them; returns tasks that became ready because an upstream went away."""
        ready: list[TaskKey] = []
        keep = set(dag.task_dict)
        for run_key in [k for k in self._runs if k[0] == dag.dag_id]:
            tracker = self._trackers.get(run_key)
            states = (
                tracker.states
                if tracker
                else {t.task_id: t.state for t in self.task_instances(run_key)}
            )
            for task_id, state in list(states.items()):
                if task_id not in keep and state is TaskState.QUEUED:
                    ready.extend(
                        self.set_task(
                            run_key,
                            task_id,
                            state,
                            TaskState.REMOVED,
                            reason="removed from the DAG",
                        )
                    )
        return ready

    def enqueue_run(self, run: DagRun) -> None:
        run_key = (run.dag_id, run.run_id)
        self._runs[run_key] = run
        self._waiting.setdefault(run.dag_id, deque()).append(run_key)

    def start_waiting_runs(self, dag_id: str) -> list[tuple[RunKey, list[tuple[str, Readiness]]]]:
        """Start the oldest queued runs of ``dag_id`` the DAG's limits allow."""
        waiting = self._waiting.get(dag_id)
        dag = self.dags.get(dag_id)
        if not waiting or dag is None or self._is_paused(dag_id):
            return []
        active = sum(1 for key in self._trackers if key[0] == dag_id)
        started = []
        while waiting and active < dag.max_active_runs:
            run_key = waiting.popleft()
            run = self._runs[run_key]
            if run.state is not RunState.QUEUED:
                continue
            running = self.store.transition_run(*run_key, RunState.QUEUED, RunState.RUNNING)
            self.metrics.counter("dag_run.started", dag_id=dag_id)
            states = {t.task_id: TaskState.QUEUED for t in dag.tasks}  # a queued run never ran
            started.append((run_key, self.track(running, states)))
            active += 1
        return started

    def track(self, run: DagRun, states: dict[str, TaskState]) -> list[tuple[str, Readiness]]:
        """Hold ``run`` in memory from now on; returns the first readiness decisions."""
        run_key = (run.dag_id, run.run_id)
        dag = self.dags[run.dag_id]
        self._runs[run_key] = run
        tracker = self._trackers[run_key] = RunTracker.build(dag, states)
        self._dirty.add(run_key)
        if any(s is not TaskState.QUEUED for s in states.values()):
            for ti in self.task_instances(run_key):
                self._tries[ti.key] = (ti.try_number, ti.max_tries)
        else:
            for task in dag.tasks:
                self._tries[TaskKey(run.dag_id, run.run_id, task.task_id)] = (0, task.retries + 1)
        return tracker.decide()

    def _is_paused(self, dag_id: str) -> bool:
        try:
            return self.store.get_dag(dag_id).is_paused
        except NotFound:
            return False

    def finish_runs(self) -> list[str]:
        """Give every run whose tasks all finished its final state; returns their DAG ids."""
        finished = []
        for run_key in list(self._dirty):
            self._dirty.discard(run_key)
            tracker = self._trackers.get(run_key)
            if tracker is None or tracker.unfinished:
                continue
            final = derive_run_state(tracker.states, tracker.leaves())
            run = self.store.transition_run(*run_key, RunState.RUNNING, final)
            self._forget(run_key, run)
            label = {"success": "completed", "failed": "failed"}.get(final.value, final.value)
            self.metrics.counter(f"dag_run.{label}", dag_id=run_key[0])
            if run.duration_ms is not None:
                self.metrics.histogram("dag_run.duration_ms", run.duration_ms, dag_id=run_key[0])
            finished.append(run_key[0])
        return finished

    def _forget(self, run_key: RunKey, run: DagRun) -> None:
        tracker = self._trackers.pop(run_key, None)
        self._runs.pop(run_key, None)
        if tracker is not None:
            for task_id in tracker.states:
                self._tries.pop(TaskKey(run_key[0], run_key[1], task_id), None)
        waiting = self._waiting.get(run_key[0])
        if waiting and run_key in waiting:
            waiting.remove(run_key)

    def cancel_run(self, run_key: RunKey) -> DagRun:
        """Cancel every unfinished task (no trigger-rule cascade) and the run itself."""
        for task_id, state in self.open_tasks(run_key):
            key = TaskKey(*run_key, task_id)
            self._changes.append(
                TaskChange(key, state, TaskState.CANCELLED, reason="run cancelled")
            )
        self.flush()
        run = self.run(*run_key)
        cancelled = self.store.transition_run(
            *run_key, run.state, RunState.CANCELLED, reason="cancelled"
        )
        self._forget(run_key, cancelled)
        self.metrics.counter("dag_run.cancelled", dag_id=run_key[0])
        return cancelled

    def retry(
        self, run_key: RunKey, task_ids: Sequence[str] | None, include_downstream: bool
    ) -> tuple[list[str], list[tuple[str, Readiness]]]:
        run = self.run(*run_key)
        dag = self.dags.get(run_key[0])
        if dag is None:
            raise NotFound(f"no DAG '{run_key[0]}' loaded to run the retry")
        tis = {ti.task_id: ti for ti in self.task_instances(run_key)}
        if task_ids is not None:
            unknown = [t for t in task_ids if t not in tis]
            if unknown:
                raise NotFound(f"run '{run.run_id}' has no task(s) {', '.join(unknown)}")
            chosen = set(task_ids)
        else:
            chosen = {t for t, ti in tis.items() if ti.state in RETRYABLE}
        if include_downstream:
            graph = Graph.of(dag)
            chosen |= graph.descendants(*[t for t in chosen if t in graph.downstream])
        requeue = [
            t
            for t in dag.task_ids
            if t in chosen
            and tis[t].state in FINISHED_TASK_STATES
            and tis[t].state is not TaskState.REMOVED
        ]
        if not requeue:
            raise Conflict(f"run '{run.run_id}' has no finished task to retry")
        tracker = self._trackers.get(run_key)
        for task_id in requeue:
            ti = tis[task_id]
            extra = dag.task_dict[task_id].retries + 1
            self._changes.append(
                TaskChange(
                    ti.key,
                    ti.state,
                    TaskState.QUEUED,
                    max_tries=ti.try_number + extra,
                    reason="retry",
                )
            )
            self._tries[ti.key] = (ti.try_number, ti.try_number + extra)
        self.flush()
        if tracker is not None:
            decisions = []
            for task_id in requeue:
                decisions.extend(tracker.set_state(task_id, TaskState.QUEUED))
            self._dirty.add(run_key)
            return requeue, decisions + tracker.decide(requeue)
        if run.state in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED):
            run = self.store.transition_run(*run_key, run.state, RunState.RUNNING, reason="retry")
        states = {ti.task_id: ti.state for ti in self.task_instances(run_key)}
        return requeue, self.track(run, states)

    # --- tries ----------------------------------------------------------------------------------
    def begin_try(self, key: TaskKey) -> int:
        try_number = self._tries.get(key, (0, 1))[0] + 1
        self.set_task(
            (key.dag_id, key.run_id),
            key.task_id,
            TaskState.QUEUED,
            TaskState.RUNNING,
            try_number=try_number,
        )
        self.metrics.counter("task.started", dag_id=key.dag_id, task_id=key.task_id)
        return try_number

    def finish_try(
        self, key: TaskKey, completion: Completion
    ) -> tuple[list[TaskKey], float | None]:
        """Record how a try ended. Returns the tasks that became ready, and the retry delay
        when this task will be tried again."""
        run_key = (key.dag_id, key.run_id)
        try_number, max_tries = self._tries.get(key, (completion.try_number, 1))
        labels: dict[str, str] = {"dag_id": key.dag_id, "task_id": key.task_id}
        if completion.outcome == "cancelled":
            return [], None  # the cancel itself already recorded the state
        if completion.outcome == "success":
            self.metrics.counter("task.completed", **labels)
            ready = self.set_task(run_key, key.task_id, TaskState.RUNNING, TaskState.SUCCESS)
            if completion.result.follow is not None:
                ready = self._skip_unfollowed(run_key, key.task_id, completion.result.follow, ready)
            return ready, None
        error = completion.error or completion.outcome
        if try_number < max_tries:
            self.metrics.counter("task.retried", **labels)
            ready = self.set_task(
                run_key, key.task_id, TaskState.RUNNING, TaskState.UP_FOR_RETRY, error=error
            )
            return ready, self.retry_delay(key, try_number)
        self.metrics.counter("task.failed", **labels)
        return self.set_task(
            run_key, key.task_id, TaskState.RUNNING, TaskState.FAILED, error=error
        ), None

    def _skip_unfollowed(
        self, run_key: RunKey, branch_id: str, follow: Sequence[str], ready: list[TaskKey]
    ) -> list[TaskKey]:
        tracker = self._trackers[run_key]
        skipped = [t for t in tracker.direct_downstream(branch_id) if t not in follow]
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

    def retry_delay(self, key: TaskKey, try_number: int) -> float:
        task = self.task(key)
        delay = task.retry_delay
        if task.retry_exponential_backoff:
            delay = delay * (2 ** max(0, try_number - 1))
        if task.max_retry_delay is not None:
            delay = min(delay, task.max_retry_delay)
        return delay

    def requeue(self, key: TaskKey, try_number: int) -> list[TaskKey]:
        """After a retry delay: up_for_retry → queued; returns it when it may run again."""
        run_key = (key.dag_id, key.run_id)
        tracker = self._trackers.get(run_key)
        if tracker is None or tracker.states.get(key.task_id) is not TaskState.UP_FOR_RETRY:
            return []
        if self._tries.get(key, (0, 0))[0] != try_number:
            return []
        ready = self.set_task(run_key, key.task_id, TaskState.UP_FOR_RETRY, TaskState.QUEUED)
        for task_id, decision in tracker.decide([key.task_id]):
            ready.extend(self.apply_decision(run_key, task_id, decision))
        return ready

    def orphan(self, ti: TaskInstance, reason: str) -> None:
        """A running try whose engine is gone: retry it if it has tries left, else fail it."""
        new = TaskState.UP_FOR_RETRY if ti.try_number < ti.max_tries else TaskState.FAILED
        self._changes.append(
            TaskChange(
                ti.key,
                TaskState.RUNNING,
                new,
                error=f"{reason}: the engine running it stopped",
                reason=reason,
            )
        )

    def abandon(self, key: TaskKey, try_number: int, reason: str) -> None:
        try_number, max_tries = self._tries.get(key, (try_number, 1))
        new = TaskState.UP_FOR_RETRY if try_number < max_tries else TaskState.FAILED
        self._changes.append(TaskChange(key, TaskState.RUNNING, new, error=reason, reason=reason))

    def fail_waiting(self, key: TaskKey, error: str) -> list[TaskKey]:
        """A queued task that can never run (e.g. its pool does not exist) fails at once."""
        run_key = (key.dag_id, key.run_id)
        try_number = self._tries.get(key, (0, 1))[0] + 1
        self.set_task(
            run_key, key.task_id, TaskState.QUEUED, TaskState.RUNNING, try_number=try_number
        )
        return self.set_task(run_key, key.task_id, TaskState.RUNNING, TaskState.FAILED, error=error)
