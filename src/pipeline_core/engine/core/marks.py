"""The core's decisions on marks made by hand: a run or one task instance set to a state,
as Airflow's "mark success / mark failed" do. Each refuses (``NotFound``, ``Conflict``,
``InvalidRequest``) before it changes anything. Pure."""

from __future__ import annotations

from pipeline_core.engine.core.deciding import CoreState
from pipeline_core.engine.core.groups import MapGroup
from pipeline_core.engine.core.messages import KillTry, MarkRun, MarkTask, RunSnapshot
from pipeline_core.engine.core.tracker import RunTracker
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.model import DagRun, TaskChange, TaskKey
from pipeline_core.state import (
    FINISHED_RUN_STATES,
    FINISHED_TASK_STATES,
    MARKABLE_RUN_STATES,
    MARKABLE_TASK_STATES,
    RunState,
    TaskState,
    derive_run_state,
)


class MarkCommands:
    def __init__(self, state: CoreState) -> None:
        self.state = state

    def mark_run(self, message: MarkRun) -> DagRun:
        if message.state not in MARKABLE_RUN_STATES:
            raise InvalidRequest(f"a run can be marked success or failed, not {message.state}")
        run_key = (message.dag_id, message.run_id)
        run, states = self.state.run_and_states(run_key, message.snapshot)
        if run.state is message.state:
            raise Conflict(f"run '{run.run_id}' is {run.state.value} already")
        success = message.state is RunState.SUCCESS
        target = TaskState.SUCCESS if success else TaskState.FAILED
        self.state.book.runs[run_key] = run
        every = {TaskKey(*run_key, t): s for t, s in states.items()}
        every.update(self.state.instance_states(run_key, message.snapshot))
        for key, state in every.items():
            keep = (TaskState.SUCCESS, TaskState.SKIPPED, TaskState.REMOVED)
            if (success and state in keep) or (not success and state in FINISHED_TASK_STATES):
                continue
            self._stop(key)
            self.state.book.writes.append(_marked(key, state, target, "the run was marked"))
        moved = self.state.move_run(
            run_key, message.state, reason=f"marked {message.state.value}", by_hand=True
        )
        self.state.book.forget(run_key)
        self.state.start_waiting_runs(run_key[0])
        return moved

    def mark_task(self, message: MarkTask) -> DagRun:
        if message.state not in MARKABLE_TASK_STATES:
            raise InvalidRequest(
                f"a task can be marked success, failed or skipped, not {message.state}"
            )
        run_key = (message.dag_id, message.run_id)
        run, states = self.state.run_and_states(run_key, message.snapshot)
        if message.map_index >= 0:
            return self._mark_instance(message, run, states)
        current = states.get(message.task_id)
        if current is None:
            raise NotFound(f"run '{run.run_id}' has no task '{message.task_id}'")
        if current is message.state:
            raise Conflict(f"task '{message.task_id}' is {current.value} already")
        if current is TaskState.REMOVED:
            raise Conflict(f"task '{message.task_id}' was removed from the DAG")
        key = TaskKey(*run_key, message.task_id)
        self._mark_all_instances(key, message)
        if run_key in self.state.book.trackers:  # running here: the downstream follows at once
            self._stop(key)
            fields = _marked(key, current, message.state, "marked")
            ready = self.state.book.set_task(
                run_key,
                message.task_id,
                current,
                message.state,
                error=fields.error,
                reason=fields.reason,
                by_hand=True,
            )
            self.state.queue(ready)
            return self.state.book.runs[run_key]
        if run.state not in FINISHED_RUN_STATES:
            raise Conflict(
                f"run '{run.run_id}' is {run.state.value} and not started by this engine; "
                "mark the run, or wait until it starts"
            )
        self.state.book.writes.append(_marked(key, current, message.state, "marked"))
        states[message.task_id] = message.state
        return self._settle_finished(run, states, message.snapshot)

    def _mark_all_instances(self, key: TaskKey, message: MarkTask) -> None:
        """A mapped task marked: its instances take the state too (but those finished,
        unless it is marked ``success``: failed ones do then)."""
        group = self.state.book.groups.get(key)
        instances = self.state.instance_states((key.dag_id, key.run_id), message.snapshot)
        for instance, state in instances.items():
            if instance.task_id != key.task_id or state is message.state:
                continue
            kept = (TaskState.SUCCESS, TaskState.SKIPPED, TaskState.REMOVED)
            success = message.state is TaskState.SUCCESS
            if state in (kept if success else FINISHED_TASK_STATES):
                continue
            self._stop(instance)
            self.state.book.writes.append(_marked(instance, state, message.state, "marked"))
            if group is not None:
                group.states[instance.map_index] = message.state
        if group is not None:
            group.admitted.clear()
            group.pending.clear()
            group.unfinished = 0

    def _mark_instance(
        self, message: MarkTask, run: DagRun, states: dict[str, TaskState]
    ) -> DagRun:
        """One instance of a mapped task marked; its task follows its instances (a finished
        one is marked as they now say)."""
        run_key = run.key
        key = TaskKey(*run_key, message.task_id, message.map_index)
        instances = self.state.instance_states(run_key, message.snapshot)
        current = instances.get(key)
        if current is None:
            raise NotFound(
                f"task '{message.task_id}' of run '{run.run_id}' has no map index "
                f"{message.map_index}"
            )
        if current is message.state:
            raise Conflict(f"map index {message.map_index} is {current.value} already")
        if current is TaskState.REMOVED:
            raise Conflict(f"map index {message.map_index} was removed")
        fields = _marked(key, current, message.state, "marked")
        book = self.state.book
        if run_key in book.trackers:
            self._stop(key)
            ready = book.move(
                key, current, message.state, error=fields.error, reason=fields.reason, by_hand=True
            )
            self.state.queue(ready)
            group = book.groups[key.parent]
            parent = book.trackers[run_key].states[message.task_id]
            derived = group.derived()
            if group.unfinished == 0 and parent in FINISHED_TASK_STATES and parent is not derived:
                self.state.queue(
                    book.set_task(
                        run_key,
                        message.task_id,
                        parent,
                        derived,
                        reason="a mapped instance was marked",
                        by_hand=True,
                    )
                )
            return book.runs[run_key]
        if run.state not in FINISHED_RUN_STATES:
            raise Conflict(
                f"run '{run.run_id}' is {run.state.value} and not started by this engine; "
                "mark the run, or wait until it starts"
            )
        book.writes.append(fields)
        instances[key] = message.state
        listed = [s for k, s in instances.items() if k.task_id == message.task_id]
        parent, derived = states[message.task_id], MapGroup.of(key.parent, listed, None).derived()
        if parent is not derived and parent in FINISHED_TASK_STATES:
            book.writes.append(_marked(key.parent, parent, derived, "a mapped instance was"))
            states[message.task_id] = derived
        return self._settle_finished(run, states, message.snapshot)

    def _settle_finished(
        self, run: DagRun, states: dict[str, TaskState], snapshot: RunSnapshot | None
    ) -> DagRun:
        """A finished run whose task was marked: its state follows its tasks' (a failed run
        whose failed leaf was marked success succeeds)."""
        dag = self.state.run_dag(run.key, snapshot)
        leaves = RunTracker.build(dag, states).leaves() if dag is not None else None
        derived = derive_run_state(states, leaves)
        if derived is run.state or derived not in MARKABLE_RUN_STATES:
            return run
        self.state.book.runs[run.key] = run
        moved = self.state.move_run(run.key, derived, reason="a task was marked", by_hand=True)
        self.state.book.forget(run.key)
        return moved

    def _stop(self, key: TaskKey) -> None:
        """Give back what the task holds, killing its try if one runs."""
        active = self.state.slots.drop(key)
        if active is not None and not active.sleeping:
            self.state.actions.append(KillTry(key, active.try_number))


def _marked(key: TaskKey, current: TaskState, new: TaskState, why: str) -> TaskChange:
    error = f"{why} failed by hand" if new is TaskState.FAILED else None
    return TaskChange(key, current, new, error=error, reason=f"{why} {new.value}", by_hand=True)
