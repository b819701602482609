"""The core's decisions about tries: starting one, what its end means (success, a retry
after its delay, failure, a sensor's next poke), and the timers that bring tasks back. Pure."""

from __future__ import annotations

from typing import Any

from pipeline_core.dag.model import POKING_TYPES
from pipeline_core.dag.templates import Reference, TemplateError, render
from pipeline_core.engine.core.book import retry_delay
from pipeline_core.engine.core.deciding import CoreState
from pipeline_core.engine.core.jobs import Completion, Job
from pipeline_core.engine.core.messages import (
    KillTry,
    SubmitTry,
    TimerKind,
)
from pipeline_core.engine.core.slots import Active
from pipeline_core.model import DagRun, TaskChange, TaskKey, UpdateAssets, iso
from pipeline_core.state import TaskState


class TryDecisions:
    def __init__(self, state: CoreState) -> None:
        self.state = state

    def start_try(self, key: TaskKey) -> None:
        run_key = (key.dag_id, key.run_id)
        task = self.state.book.task(key)
        active = self.state.slots.active.get(key)
        if active is not None and active.sleeping:  # a sensor's next poke: the same try
            active.sleeping = False
        else:
            try_number = self.state.book.tries.get(key, (0, 1))[0] + 1
            self.state.book.move(key, TaskState.QUEUED, TaskState.RUNNING, try_number=try_number)
            active = self.state.slots.active[key] = Active(
                key, try_number, task.pool, self.state.now.monotonic
            )
        timeout = task.timeout
        if task.type in POKING_TYPES and timeout is not None:
            timeout = max(0.001, timeout - (self.state.now.monotonic - active.first_started))
        dag = self.state.book.trackers[run_key].dag
        job = Job(key, active.try_number, dag, task, self.state.book.runs[run_key], timeout)
        self.state.actions.append(SubmitTry(job))

    def complete(self, completion: Completion) -> None:
        key = completion.key
        active = self.state.slots.active.get(key)
        if active is None or active.try_number != completion.try_number or active.sleeping:
            return  # a late report of a try that was cancelled or timed out already
        self.state.slots.release(active)
        task = self.state.book.task(key)
        if task.type in POKING_TYPES and (
            completion.outcome == "timeout"  # a poke cut short by what was left of the budget
            or (completion.outcome == "success" and not completion.result.poke_ok)
        ):
            elapsed = self.state.now.monotonic - active.first_started
            if completion.outcome == "success" and (task.timeout is None or elapsed < task.timeout):
                active.sleeping = True
                default = 30.0 if task.type == "sensor" else 5.0
                interval = float(task.config.get("poke_interval", default))
                self.state.timer(interval, TimerKind.POKE, key, active.try_number)
                return
            waited = "sensor" if task.type == "sensor" else "trigger_dag waiting for its run"
            completion = Completion(
                key, completion.try_number, "timeout", f"{waited} timed out after {task.timeout:g}s"
            )
        del self.state.slots.active[key]
        self._finish_try(key, completion)

    def _finish_try(self, key: TaskKey, completion: Completion) -> None:
        if completion.outcome == "cancelled":
            return  # the cancel itself already recorded the state
        book = self.state.book
        if completion.outcome == "success" and book.task(key).outlets:
            try:
                run = book.runs[(key.dag_id, key.run_id)]
                uris = outlet_uris(book.task(key).outlets, run, key.task_id)
            except TemplateError as exc:
                completion = Completion(key, completion.try_number, "failed", str(exc))
            else:
                book.writes.append(UpdateAssets(key, uris))  # written after its success
        if completion.outcome == "success":
            follow = completion.result.follow
            group = book.groups.get(key.parent) if key.map_index >= 0 else None
            if group is not None and follow is not None:  # a mapped branch: all choices count
                group.follow = (group.follow or set()) | set(follow)
            ready = book.move(key, TaskState.RUNNING, TaskState.SUCCESS)
            if follow is not None and key.map_index < 0:
                ready = book.skip_unfollowed((key.dag_id, key.run_id), key.task_id, follow, ready)
            self.state.queue(ready)
            return
        error = completion.error or completion.outcome
        try_number, max_tries = book.tries.get(key, (completion.try_number, 1))
        if try_number < max_tries:
            self.state.queue(book.move(key, TaskState.RUNNING, TaskState.UP_FOR_RETRY, error=error))
            self.state.timer(
                retry_delay(book.task(key), try_number), TimerKind.RETRY, key, try_number
            )
            return
        self.state.queue(book.move(key, TaskState.RUNNING, TaskState.FAILED, error=error))

    def requeue(self, key: TaskKey, try_number: int) -> None:
        """A retry delay is over: up_for_retry → queued, and onto a pool queue when ready."""
        book = self.state.book
        if book.state_of(key) is not TaskState.UP_FOR_RETRY:
            return
        if book.tries.get(key, (0, 0))[0] != try_number:
            return
        ready = book.move(key, TaskState.UP_FOR_RETRY, TaskState.QUEUED)
        if key.map_index < 0:
            run_key = (key.dag_id, key.run_id)
            ready += book.follow(run_key, book.trackers[run_key].decide([key.task_id]))
        self.state.queue(ready)

    def repoke(self, key: TaskKey, try_number: int) -> None:
        active = self.state.slots.active.get(key)
        if active is not None and active.sleeping and active.try_number == try_number:
            self.state.queue([key])

    def fail_waiting(self, key: TaskKey, error: str) -> None:
        """A queued task that can never run (its pool does not exist) fails at once."""
        book = self.state.book
        try_number = book.tries.get(key, (0, 1))[0] + 1
        book.move(key, TaskState.QUEUED, TaskState.RUNNING, try_number=try_number)
        self.state.queue(book.move(key, TaskState.RUNNING, TaskState.FAILED, error=error))

    def abandon(self, reason: str) -> None:
        for key, active in list(self.state.slots.active.items()):
            if not active.sleeping:
                self.state.actions.append(KillTry(key, active.try_number))
            self.state.slots.release(active)
            try_number, max_tries = self.state.book.tries.get(key, (active.try_number, 1))
            new = TaskState.UP_FOR_RETRY if try_number < max_tries else TaskState.FAILED
            self.state.book.writes.append(
                TaskChange(key, TaskState.RUNNING, new, error=reason, reason=reason)
            )
        self.state.slots.active.clear()


def outlet_uris(outlets: tuple[str, ...], run: DagRun, task_id: str) -> tuple[str, ...]:
    """The asset URIs a task's success updates, its outlets' run templates rendered
    (``TemplateError`` naming one that has no value)."""
    when = iso(run.logical_date)
    values = {"run_id": run.run_id, "dag_id": run.dag_id, "task_id": task_id, "ts": when,
              "ds": run.logical_date.strftime("%Y-%m-%d"), "logical_date": when}  # fmt: skip

    def resolve(reference: Reference) -> Any:
        if reference.root != "dag_run":
            return values.get(reference.root, "")
        value: Any = dict(run.conf)
        for part in reference.parts[2:]:
            if not isinstance(value, dict) or part not in value:
                raise TemplateError(f"outlet '{{{{ {reference.text} }}}}' has no value in the run")
            value = value[part]
        return value

    return tuple(str(render(outlet, resolve)) for outlet in outlets)
