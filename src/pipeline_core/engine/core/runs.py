"""The core's decisions on whole runs: cancel, retry, taking over unfinished runs, and new
DAG definitions. Each refuses (``NotFound``, ``Conflict``) before it changes anything. Pure."""

from __future__ import annotations

from typing import Any

from pipeline_core.dag.graph import Graph
from pipeline_core.engine.core.book import RunKey, retry_delay
from pipeline_core.engine.core.deciding import CoreState
from pipeline_core.engine.core.messages import (
    Cancel,
    DeadlineDue,
    KillTry,
    Retry,
    RunSnapshot,
    TimerKind,
)
from pipeline_core.engine.core.slots import Active
from pipeline_core.engine.core.versions import latest_states, switch_to_latest
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import DagRun, TaskChange, TaskInstance, TaskKey
from pipeline_core.state import FINISHED_TASK_STATES, RunState, TaskState

RETRYABLE = (TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED)
ORPHANED = "orphaned: the engine running it stopped"


class RunCommands:
    def __init__(self, state: CoreState) -> None:
        self.state = state

    def cancel(self, message: Cancel, reason: str = "cancelled") -> DagRun:
        run_key = (message.dag_id, message.run_id)
        run, states = self.state.run_and_states(run_key, message.snapshot)
        if run.state not in (RunState.QUEUED, RunState.RUNNING):
            raise Conflict(
                f"run '{run.run_id}' already finished ({run.state.value}); nothing to cancel"
            )
        self.state.book.runs[run_key] = run
        every = {TaskKey(*run_key, t): s for t, s in states.items()}
        every.update(self.state.instance_states(run_key, message.snapshot))
        for key, state in every.items():
            if state in FINISHED_TASK_STATES:
                continue
            active = self.state.slots.drop(key)
            if active is not None and not active.sleeping:
                self.state.actions.append(KillTry(key, active.try_number))
            self.state.book.writes.append(
                TaskChange(key, state, TaskState.CANCELLED, reason=f"run {reason}")
            )
        cancelled = self.state.move_run(run_key, RunState.CANCELLED, reason=reason)
        self.state.book.forget(run_key)
        self.state.start_waiting_runs(run_key[0])
        return cancelled

    def retry(self, message: Retry) -> tuple[DagRun, list[str]]:
        """Queue finished tasks again, in the run's DAG version (or its latest:
        ``use_latest``)."""
        run_key = (message.dag_id, message.run_id)
        latest = self.state.book.dags.get(run_key[0])
        if latest is None:
            raise NotFound(f"no DAG '{run_key[0]}' loaded to run the retry")
        run, states = self.state.run_and_states(run_key, message.snapshot)
        dag = latest if message.use_latest else self.state.run_dag(run_key, message.snapshot)
        assert dag is not None
        switch = message.use_latest and run.dag_version != latest.version
        if switch:
            before, states = states, latest_states(run, states, latest)
        tracked = run_key in self.state.book.trackers
        if tracked:
            held = self.state.book.tries
            tries = {t: held.get(TaskKey(*run_key, t), (0, 1)) for t in states}
        else:
            snapshot = message.snapshot or RunSnapshot(run, ())
            tries = {ti.task_id: (ti.try_number, ti.max_tries) for ti in snapshot.tasks}
        if message.task_ids is not None:
            unknown = [t for t in message.task_ids if t not in states]
            if unknown:
                raise NotFound(f"run '{run.run_id}' has no task(s) {', '.join(unknown)}")
            chosen = set(message.task_ids)
        else:
            chosen = {t for t, state in states.items() if state in RETRYABLE}
        if message.include_downstream:
            graph = Graph.of(dag)
            chosen |= graph.descendants(*[t for t in chosen if t in graph.downstream])
        requeue = [
            t
            for t in dag.task_ids
            if t in chosen
            and t in states
            and states[t] in FINISHED_TASK_STATES
            and states[t] is not TaskState.REMOVED
        ]
        if not requeue:
            raise Conflict(f"run '{run.run_id}' has no finished task to retry")
        if switch:
            run = switch_to_latest(self.state, run_key, run, before, tries, latest, requeue)
            states = before
        grants = {t: tries.get(t, (0, 1))[0] + dag.task_dict[t].retries + 1 for t in requeue}
        if tracked:
            ready: list[TaskKey] = []
            for task_id in requeue:
                ready += self.state.book.set_task(
                    run_key,
                    task_id,
                    states[task_id],
                    TaskState.QUEUED,
                    max_tries=grants[task_id],
                    reason="retry",
                )
            self.state.queue(
                ready
                + self.state.book.follow(run_key, self.state.book.trackers[run_key].decide(requeue))
            )
            return self.state.book.runs[run_key], requeue
        for task_id in requeue:
            key = TaskKey(*run_key, task_id)
            self.state.book.writes.append(
                TaskChange(
                    key,
                    states[task_id],
                    TaskState.QUEUED,
                    max_tries=grants[task_id],
                    reason="retry",
                )
            )
            states[task_id] = TaskState.QUEUED
            tries[task_id] = (tries.get(task_id, (0, 1))[0], grants[task_id])
        self.state.book.runs[run_key] = run
        if run.state in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED):
            run = self.state.move_run(run_key, RunState.RUNNING, reason="retry")
        self.state.track(run, states, tries, snapshot.instances, dag)
        return run, requeue

    def resume(self, snapshot: RunSnapshot, adopt: frozenset[TaskKey] = frozenset()) -> None:
        """Take over an unfinished run: running tries are orphaned (retried when they have
        tries left) unless they still run elsewhere (``adopt``: they keep a slot and their
        report ends them), up-for-retry ones wait out their delay again."""
        run = snapshot.run
        if self.state.book.knows(run.key) or run.dag_id not in self.state.book.dags:
            return
        states = {ti.task_id: ti.state for ti in snapshot.tasks}
        tries = {ti.task_id: (ti.try_number, ti.max_tries) for ti in snapshot.tasks}
        dag = snapshot.dag or self.state.book.dags[run.dag_id]
        mapped = {ti.task_id for ti in snapshot.instances}
        orphans = []
        for ti in snapshot.task_instances:
            task = dag.task_dict.get(ti.task_id)
            if ti.state is not TaskState.RUNNING:
                continue
            if ti.key in adopt and task is not None:
                self.state.slots.hold(
                    Active(ti.key, ti.try_number, task.pool, self.state.now.monotonic)
                )
            elif ti.map_index < 0 and ti.task_id in mapped and task and task.expansion:
                continue  # a mapped task runs while its instances do
            elif ti.map_index >= 0:
                orphans.append(ti)  # moved once the run is held: its task may end with it
            else:
                # Stopped wherever it may still run (a remote worker that claimed it late).
                self.state.actions.append(KillTry(ti.key, ti.try_number))
                new = _orphaned(ti)
                self.state.book.writes.append(
                    TaskChange(ti.key, TaskState.RUNNING, new, error=ORPHANED, reason="orphaned")
                )
                states[ti.task_id] = new
        if run.state is RunState.QUEUED:
            self.state.book.enqueue(run, states, snapshot.dag)
            self.state.start_waiting_runs(run.dag_id)
            return
        self.state.track(run, states, tries, snapshot.instances, snapshot.dag)
        self.state.arm_deadline(run)
        for ti in orphans:
            self.state.actions.append(KillTry(ti.key, ti.try_number))
            self.state.queue(
                self.state.book.move(
                    ti.key, TaskState.RUNNING, _orphaned(ti), error=ORPHANED, reason="orphaned"
                )
            )
        for ti in snapshot.task_instances:
            if (
                ti.task_id in dag.task_dict
                and self.state.book.state_of(ti.key) is TaskState.UP_FOR_RETRY
            ):
                self.state.timer(
                    retry_delay(self.state.book.task(ti.key), ti.try_number),
                    TimerKind.RETRY,
                    ti.key,
                    self.state.book.tries.get(ti.key, (ti.try_number, 1))[0],
                )

    def deadline(self, due: DeadlineDue) -> None:
        """Record a deadline missed by a run still going; cancel it if its DAG says so.
        The store records a run's miss once, however often this is decided (a restart)."""
        run_key = (due.dag_id, due.run_id)
        run = self.state.book.runs.get(run_key)
        dag = self.state.book.dag_of(run_key)
        if run is None or run.state is not RunState.RUNNING or dag is None:
            return
        action = dag.deadline_action
        self.state.miss_deadline(run_key, due.deadline, action)
        if action == "cancel":
            self.cancel(Cancel(due.dag_id, due.run_id), reason="deadline missed")

    def resync(self, snapshot: RunSnapshot) -> None:
        """A write of this run was lost: hold the run as the store has it. Tries the store
        does not show running give their slots back; ready tasks queue again."""
        run_key = snapshot.run.key
        if run_key not in self.state.book.trackers:
            return
        states = {ti.task_id: ti.state for ti in snapshot.tasks}
        tries = {ti.task_id: (ti.try_number, ti.max_tries) for ti in snapshot.tasks}
        for ti in snapshot.task_instances:
            if ti.state is not TaskState.RUNNING:
                self.state.slots.drop(ti.key)
        self.state.track(self.state.book.runs[run_key], states, tries, snapshot.instances)

    def forget(self, run_key: RunKey) -> None:
        for task_id in self.state.book.states(run_key) if self.state.book.knows(run_key) else ():
            self.state.slots.drop(TaskKey(*run_key, task_id))
        self.state.book.forget(run_key)

    def set_dags(self, dags: dict[str, Any], paused: set[str]) -> list[str]:
        """New latest definitions: new runs use them; held runs keep their versions."""
        new = sorted(set(dags) - set(self.state.book.dags))
        self.state.book.set_dags(dags)
        self.state.book.paused = paused
        for dag_id in dags:
            self.state.start_waiting_runs(dag_id)
        return new


def _orphaned(ti: TaskInstance) -> TaskState:
    """What a try no engine holds any more becomes."""
    return TaskState.UP_FOR_RETRY if ti.try_number < ti.max_tries else TaskState.FAILED
