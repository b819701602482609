"""What an operator does to a run by hand, as in Airflow's REST API: mark a run (``PATCH
.../runs/:run_id``), mark one task instance (``PATCH .../tasks/:task_id``) and clear tasks so
they run again (``POST .../runs/:run_id/clear``, with a dry run that only lists them)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline_core.api.http import Request, Response, bad_request, envelope
from pipeline_core.api.routes.runs import MAX_NOTE, control_of, run_with_tasks
from pipeline_core.api.serialize import run_dict, task_instance_dict
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import TaskInstance, TaskKey
from pipeline_core.state import (
    FINISHED_TASK_STATES,
    MARKABLE_RUN_STATES,
    MARKABLE_TASK_STATES,
    RunState,
    TaskState,
)
from pipeline_core.store.base import Store
from pipeline_core.store.types import TaskInstanceQuery

CLEARABLE = FINISHED_TASK_STATES - {TaskState.REMOVED}
FAILED = (TaskState.FAILED, TaskState.UPSTREAM_FAILED)


def patch_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.json_object({"state", "note"})
        if not body:
            raise bad_request("give 'state' (success or failed), 'note', or both")
        state = _state(body, "state", MARKABLE_RUN_STATES, RunState) if "state" in body else None
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise bad_request(f"'note' must be a string of at most {MAX_NOTE} characters or null")
        run = store.get_run(request.params["dag_id"], request.params["run_id"])
        if state is not None:
            run = control_of(control).mark_run(run.dag_id, run.run_id, state)
        if "note" in body:
            run = store.set_run_note(run.dag_id, run.run_id, note)
        return envelope(run_with_tasks(store, run))

    return handle


def patch_task(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.json_object({"state"})
        if "state" not in body:
            raise bad_request("give 'state': success, failed or skipped")
        state = _state(body, "state", MARKABLE_TASK_STATES, TaskState)
        p = request.params
        key = TaskKey(p["dag_id"], p["run_id"], p["task_id"])
        store.get_task_instance(key)
        control_of(control).mark_task(key.dag_id, key.run_id, key.task_id, state)
        return envelope(task_instance_dict(store.get_task_instance(key)))

    return handle


def clear_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.json_object({"task_ids", "only_failed", "include_downstream", "dry_run"})
        task_ids = body.get("task_ids")
        if task_ids is not None and (
            not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids)
        ):
            raise bad_request("'task_ids' must be a list of task ids")
        flags = {name: _flag(body, name) for name in ("only_failed", "include_downstream")}
        dry_run = _flag(body, "dry_run")
        run = store.get_run(request.params["dag_id"], request.params["run_id"])
        instances = _instances(store, run.dag_id, run.run_id)
        definition = store.get_dag(run.dag_id).definition or {}
        chosen = to_clear(instances, _downstream(definition), task_ids, **flags)
        if dry_run:
            listed = [task_instance_dict(instances[t]) for t in chosen]
            return envelope({"dry_run": True, "task_ids": chosen, "task_instances": listed})
        if not chosen:
            raise Conflict(f"run '{run.run_id}' has no finished task to clear")
        cleared, requeued = control_of(control).retry(run.dag_id, run.run_id, chosen, False)
        after = _instances(store, run.dag_id, run.run_id)
        return envelope(
            {
                "dry_run": False,
                "task_ids": requeued,
                "task_instances": [task_instance_dict(after[t]) for t in requeued],
                "run": run_dict(store.get_run(cleared.dag_id, cleared.run_id)),
            }
        )

    return handle


def to_clear(
    instances: Mapping[str, TaskInstance],
    downstream: Mapping[str, Sequence[str]],
    task_ids: Sequence[str] | None,
    *,
    only_failed: bool,
    include_downstream: bool,
) -> list[str]:
    """The finished tasks a clear re-queues, in the run's order: ``task_ids`` (every task
    when ``None``), with their downstream, only the failed ones when asked. Running and
    waiting tasks are left as they are."""
    if task_ids is not None:
        unknown = [t for t in task_ids if t not in instances]
        if unknown:
            raise NotFound(f"the run has no task(s) {', '.join(unknown)}")
    chosen = set(instances if task_ids is None else task_ids)
    if include_downstream:
        frontier = list(chosen)
        while frontier:
            for child in downstream.get(frontier.pop(), ()):
                if child not in chosen and child in instances:
                    chosen.add(child)
                    frontier.append(child)
    wanted = FAILED if only_failed else CLEARABLE
    return [t for t, ti in instances.items() if t in chosen and ti.state in wanted]


def _downstream(definition: Mapping[str, Any]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for task in definition.get("tasks", []):
        for parent in task.get("depends_on", []):
            children.setdefault(parent, []).append(task["task_id"])
    return children


def _instances(store: Store, dag_id: str, run_id: str) -> dict[str, TaskInstance]:
    found = store.query_task_instances(
        TaskInstanceQuery(dag_id=dag_id, run_id=run_id, limit=100_000)
    )
    return {ti.task_id: ti for ti in found.items}


def _state(body: dict[str, Any], name: str, allowed: frozenset[Any], kind: Any) -> Any:
    names = sorted(s.value for s in allowed)
    value = body.get(name)
    if value not in names:
        raise bad_request(f"'{name}' must be one of {', '.join(names)}, got {value!r}")
    return kind(value)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false")
    return value
