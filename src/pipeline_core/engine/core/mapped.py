"""The instances of mapped tasks as the core holds them: a ``MapGroup`` per mapped task of a
held run, and ``MapDecisions``, what the core decides once a mapped task's values are known
(expand, skip or fail it). Pure.

A mapped task that becomes ready is not queued for a slot: the core asks the engine's shell
for its values (``ResolveMapping``), and the shell answers in the same wake-up with how many
instances they make (``Resolved``), so the instances are created in the commit of the
wake-up that made the task ready. The task itself (``map_index`` -1) then runs while its
instances do, and ends with them: ``failed`` if one failed, ``skipped`` if all were skipped,
else ``success``.
"""

from __future__ import annotations

from pipeline_core.dag.graph import Graph
from pipeline_core.engine.core.deciding import CoreState
from pipeline_core.engine.core.groups import MapGroup
from pipeline_core.engine.core.messages import Resolved, Retry, RunSnapshot
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.model import DagRun, ExpandTask, TaskChange, TaskKey
from pipeline_core.state import FINISHED_TASK_STATES, RunState, TaskState


class MapDecisions:
    def __init__(self, state: CoreState) -> None:
        self.state = state

    def resolved(self, message: Resolved) -> None:
        """The values of a ready mapped task are known: expand it into ``count`` instances,
        skip it (none), or fail it (``error``). A stale answer (the task moved meanwhile)
        changes nothing."""
        key = message.key
        run_key = (key.dag_id, key.run_id)
        book = self.state.book
        tracker = book.trackers.get(run_key)
        if tracker is None or tracker.states.get(key.task_id) is not TaskState.QUEUED:
            return
        if message.error is not None:
            book.set_task(run_key, key.task_id, TaskState.QUEUED, TaskState.RUNNING, try_number=1)
            ready = book.set_task(
                run_key, key.task_id, TaskState.RUNNING, TaskState.FAILED, error=message.error
            )
        elif message.count == 0:
            ready = book.set_task(
                run_key,
                key.task_id,
                TaskState.QUEUED,
                TaskState.SKIPPED,
                reason="mapped over an empty list",
            )
        else:
            ready = self._expand(key, message.count)
        self.state.queue(ready)

    def _expand(self, key: TaskKey, count: int) -> list[TaskKey]:
        """Instances ``0 … count-1`` queued: new ones created, those of an earlier mapping
        run again, those past ``count`` skipped. Returns them."""
        book = self.state.book
        task = book.task(key)
        assert task.expansion is not None
        book.set_task(
            (key.dag_id, key.run_id), key.task_id, TaskState.QUEUED, TaskState.RUNNING,
            reason=f"mapped into {count} instances",
        )  # fmt: skip
        old = book.groups.get(key)
        states = list(old.states) if old is not None else []
        for index, current in enumerate(states):
            new = TaskState.QUEUED if index < count else TaskState.SKIPPED
            if current is new or current is TaskState.REMOVED:
                continue
            instance = key.instance(index)
            try_number = book.tries.get(instance, (0, 1))[0]
            grant = try_number + task.retries + 1
            book.writes.append(
                TaskChange(
                    instance, current, TaskState.QUEUED, max_tries=grant, reason="mapped again"
                )
            )
            if new is TaskState.SKIPPED:  # past the end of the new values
                why = f"mapped again over {count} values"
                book.writes.append(TaskChange(instance, TaskState.QUEUED, new, reason=why))
            book.tries[instance] = (try_number, grant)
            states[index] = new
        first = len(states)
        if count > first:
            book.writes.append(
                ExpandTask(key, count, task.retries + 1, task.pool, task.priority_weight, first)
            )
            for index in range(first, count):
                book.tries[key.instance(index)] = (0, task.retries + 1)
            states += [TaskState.QUEUED] * (count - first)
        book.groups[key] = MapGroup.of(key, states, task.expansion.max_active)
        return [key.instance(i) for i in range(count) if states[i] is TaskState.QUEUED]

    def retry_instance(self, message: Retry, map_index: int) -> tuple[DagRun, list[str]]:
        """Run one finished instance of a mapped task again (its task runs again while it
        does), and the task's finished downstream after it."""
        run_key = (message.dag_id, message.run_id)
        book = self.state.book
        if run_key[0] not in book.dags:
            raise NotFound(f"no DAG '{run_key[0]}' loaded to run the retry")
        dag = self.state.run_dag(run_key, message.snapshot)
        assert dag is not None
        run, states = self.state.run_and_states(run_key, message.snapshot)
        if message.task_ids is None or len(message.task_ids) != 1:
            raise InvalidRequest("map_index retries one instance: name exactly one task")
        task_id = message.task_ids[0]
        task = dag.task_dict.get(task_id)
        if task is None or task.expansion is None or task_id not in states:
            raise InvalidRequest(f"task '{task_id}' of run '{run.run_id}' is not a mapped task")
        key = TaskKey(*run_key, task_id, map_index)
        current = self.state.instance_states(run_key, message.snapshot).get(key)
        if current is None:
            raise NotFound(f"task '{task_id}' of run '{run.run_id}' has no map index {map_index}")
        if current not in FINISHED_TASK_STATES or current is TaskState.REMOVED:
            raise Conflict(f"map index {map_index} of task '{task_id}' is {current.value}")
        downstream = Graph.of(dag).descendants(task_id) if message.include_downstream else set()
        again = [
            t
            for t in dag.task_ids
            if t in downstream
            and states.get(t) in FINISHED_TASK_STATES
            and states[t] is not TaskState.REMOVED
        ]
        if run_key not in book.trackers:
            snapshot = message.snapshot or RunSnapshot(run, ())
            tries = {ti.task_id: (ti.try_number, ti.max_tries) for ti in snapshot.tasks}
            book.runs[run_key] = run
            if run.state in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED):
                run = self.state.move_run(run_key, RunState.RUNNING, reason="retry")
            self.state.track(run, states, tries, snapshot.instances, dag)
        why = f"retry of map index {map_index}"
        parent = states[task_id]
        if parent in FINISHED_TASK_STATES:
            book.set_task(run_key, task_id, parent, TaskState.QUEUED, reason=why)
            book.set_task(run_key, task_id, TaskState.QUEUED, TaskState.RUNNING, reason=why)
        for t in again:
            grant = book.tries.get(TaskKey(*run_key, t), (0, 1))[0] + dag.task_dict[t].retries + 1
            book.set_task(run_key, t, states[t], TaskState.QUEUED, max_tries=grant, reason=why)
        grant = book.tries.get(key, (0, 1))[0] + task.retries + 1
        self.state.queue(book.move(key, current, TaskState.QUEUED, max_tries=grant, reason="retry"))
        return book.runs[run_key], [task_id, *again]
