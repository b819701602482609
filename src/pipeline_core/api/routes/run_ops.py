"""What an operator does to a run by hand, as in Airflow's REST API: mark a run (``PATCH
.../runs/:run_id``), mark one task instance (``PATCH .../tasks/:task_id``) and clear tasks so
they run again (``POST .../runs/:run_id/clear``, with a dry run that only lists them)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline_core.api.http import Request, Response, envelope
from pipeline_core.api.openapi.operation import RUN, TASK, Operation
from pipeline_core.api.openapi.parts import ID, NOTE, closed, envelope_of
from pipeline_core.api.openapi.schemas import obj, ref
from pipeline_core.api.routes.runs import control_of, run_with_tasks
from pipeline_core.api.routes.tasks import task_key
from pipeline_core.api.serialize import run_dict, task_instance_dict
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import DagRun, TaskInstance
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

PATCH_RUN = Operation(
    "patch_run",
    "runs",
    "Mark a run success or failed, or set its note",
    "Mark a run success (its unfinished and failed tasks become success) or failed (its "
    "unfinished tasks fail; running tries are killed), and/or set its note.",
    envelope_of(ref("RunDetail")),
    RUN,
    body={
        **closed(state={"enum": sorted(s.value for s in MARKABLE_RUN_STATES)}, note=NOTE),
        "minProperties": 1,
    },
    body_required=True,
    example={"state": "success", "note": "fixed upstream by hand"},
)
PATCH_TASK = Operation(
    "patch_task_instance",
    "tasks",
    "Mark a task instance success, failed or skipped",
    "Mark one task instance success, failed or skipped; a running try is killed, and the "
    "downstream tasks follow their trigger rules. In a finished run, the run's state follows "
    "its tasks' (marking its failed leaf success makes it succeed). A mapped task's "
    "instances take the state with it.",
    envelope_of(ref("TaskInstance")),
    TASK,
    body=closed(["state"], state={"enum": sorted(s.value for s in MARKABLE_TASK_STATES)}),
    body_required=True,
    example={"state": "skipped"},
)
CLEAR = Operation(
    "clear_run",
    "runs",
    "Clear tasks so they run again (or list them: dry_run)",
    "Queue finished tasks again: the given ones (default: all), with their downstream when "
    "asked, only the failed ones when asked; the run runs again, in the DAG version it was "
    "made with unless `use_latest` moves it to the latest. A dry run lists what would be "
    "cleared and changes nothing.",
    envelope_of(
        obj(
            ["dry_run", "task_ids", "task_instances"],
            dry_run={"type": "boolean"},
            task_ids={"type": "array", "items": {"type": "string"}},
            task_instances={"type": "array", "items": ref("TaskInstance")},
            run=ref("Run"),
        )
    ),
    RUN,
    body=closed(
        task_ids={"type": ["array", "null"], "items": ID},
        only_failed={"type": "boolean"},
        include_downstream={"type": "boolean"},
        dry_run={"type": "boolean"},
        use_latest={"type": "boolean"},
    ),
    example={"task_ids": ["transform"], "include_downstream": True, "dry_run": True},
)


def patch_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.fields
        state = RunState(body["state"]) if "state" in body else None
        run = store.runs.get_run(request.params["dag_id"], request.params["run_id"])
        if state is not None:
            run = control_of(control).mark_run(run.dag_id, run.run_id, state)
        if "note" in body:
            run = store.runs.set_run_note(run.dag_id, run.run_id, body["note"])
        return envelope(run_with_tasks(store, run))

    return handle


def patch_task(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        state = TaskState(request.fields["state"])
        key = task_key(request)
        store.tasks.get_task_instance(key)
        control_of(control).mark_task(key.dag_id, key.run_id, key.task_id, state, key.map_index)
        return envelope(task_instance_dict(store.tasks.get_task_instance(key)))

    return handle


def clear_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.fields
        task_ids = body.get("task_ids")
        flags = {name: body.get(name, False) for name in ("only_failed", "include_downstream")}
        dry_run, latest = body.get("dry_run", False), body.get("use_latest", False)
        run = store.runs.get_run(request.params["dag_id"], request.params["run_id"])
        instances = _instances(store, run.dag_id, run.run_id)
        chosen = to_clear(
            instances, _downstream(run_definition(store, run, latest)), task_ids, **flags
        )
        if dry_run:
            listed = [task_instance_dict(instances[t]) for t in chosen]
            return envelope({"dry_run": True, "task_ids": chosen, "task_instances": listed})
        if not chosen:
            raise Conflict(f"run '{run.run_id}' has no finished task to clear")
        cleared, requeued = control_of(control).retry(
            run.dag_id, run.run_id, chosen, False, use_latest=latest
        )
        after = _instances(store, run.dag_id, run.run_id)
        return envelope(
            {
                "dry_run": False,
                "task_ids": requeued,
                "task_instances": [task_instance_dict(after[t]) for t in requeued],
                "run": run_dict(store.runs.get_run(cleared.dag_id, cleared.run_id)),
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


def run_definition(store: Store, run: DagRun, use_latest: bool) -> Mapping[str, Any]:
    """The definition a run's tasks follow: its own version's, or the DAG's latest."""
    if run.dag_version is not None and not use_latest:
        with contextlib.suppress(NotFound):  # a version the store never had: the latest
            return store.dags.get_version(run.dag_id, run.dag_version).definition or {}
    return store.dags.get_dag(run.dag_id).definition or {}


def _downstream(definition: Mapping[str, Any]) -> dict[str, list[str]]:
    children: dict[str, list[str]] = {}
    for task in definition.get("tasks", []):
        for parent in task.get("depends_on", []):
            children.setdefault(parent, []).append(task["task_id"])
    return children


def _instances(store: Store, dag_id: str, run_id: str) -> dict[str, TaskInstance]:
    found = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id=dag_id, run_id=run_id, limit=100_000)
    )
    return {ti.task_id: ti for ti in found.items}
