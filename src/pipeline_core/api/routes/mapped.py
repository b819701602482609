"""``…/tasks/:task_id/mapped``: the instances of a mapped task, a page at a time (by state),
and one instance with its tries, XCom and log — the handlers of an unmapped task's, keyed
by the instance's ``map_index`` — marked by hand or run again on its own."""

from __future__ import annotations

from collections.abc import Callable

from pipeline_core.api.http import Request, Response, envelope, listing
from pipeline_core.api.openapi.operation import PAGE, TASK, Operation, Param, many
from pipeline_core.api.openapi.parts import closed, envelope_of
from pipeline_core.api.openapi.schemas import obj, ref
from pipeline_core.api.params import page as read_page
from pipeline_core.api.routes import run_ops, tasks
from pipeline_core.api.routes.runs import control_of
from pipeline_core.api.serialize import run_dict, task_instance_dict
from pipeline_core.engine.control import Control
from pipeline_core.model import TaskKey
from pipeline_core.state import TaskState
from pipeline_core.store.base import Store
from pipeline_core.store.types import TaskInstanceQuery

#: The most instances one task may be mapped into (``max_map_length`` cannot exceed it).
MAX_MAP_INDEX = 1_000_000
INSTANCE = (*TASK, Param("map_index", "path", {"type": "integer", "minimum": 0,
                                               "maximum": MAX_MAP_INDEX}))  # fmt: skip

LIST = Operation(
    "list_mapped_instances",
    "tasks",
    "Instances of a mapped task",
    "The instances of a mapped task in index order, a page at a time, optionally only "
    "those in the given states. A task that is not mapped (or not expanded yet) has none.",
    envelope_of(ref("TaskInstance"), listing=True),
    (*TASK, Param("state", schema=many(s.value for s in TaskState)), *PAGE),
    read=True,
)
GET = Operation(
    "get_mapped_instance",
    "tasks",
    "An instance of a mapped task with every try",
    "One instance of a mapped task with every try: start, end, state and error.",
    tasks.GET.success,
    INSTANCE,
    read=True,
)
XCOM = Operation(
    "get_mapped_xcom",
    "tasks",
    "XCom entries of an instance of a mapped task",
    "The XCom values one instance pushed, optionally only the given keys, a page at a time.",
    tasks.XCOM.success,
    (*INSTANCE, *tasks.XCOM.params[len(TASK) :]),
    read=True,
)
LOG = Operation(
    "get_mapped_log",
    "tasks",
    "The log of an instance of a mapped task",
    "A byte range of one try's log of one instance, or with follow=true the log streamed "
    "as it is written, as for a task that is not mapped.",
    tasks.LOG.success,
    (*INSTANCE, *tasks.LOG.params[len(TASK) :]),
    read=True,
    media=tasks.LOG.media,
)


PATCH = Operation(
    "patch_mapped_instance",
    "tasks",
    "Mark an instance of a mapped task success, failed or skipped",
    "Mark one instance of a mapped task; a running try is killed. Its task ends with its "
    "instances (failed if one failed, skipped if all were skipped, else success), and a "
    "finished task follows them.",
    run_ops.PATCH_TASK.success,
    INSTANCE,
    body=run_ops.PATCH_TASK.body,
    body_required=True,
    example={"state": "success"},
)
CLEAR = Operation(
    "clear_mapped_instance",
    "tasks",
    "Run one instance of a mapped task again",
    "Queue one finished instance of a mapped task again, with a try more; its task runs "
    "again while it does, and with include_downstream (the default) the task's finished "
    "downstream runs after it.",
    envelope_of(obj(["task_ids", "run"], task_ids={"type": "array", "items": {"type": "string"}},
                    run=ref("Run"))),
    INSTANCE,
    body=closed(include_downstream={"type": "boolean"}),
    example={"include_downstream": True},
)  # fmt: skip


def clear_instance(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        key = tasks.task_key(request)
        store.tasks.get_task_instance(key)
        downstream = request.fields.get("include_downstream", True)
        run, requeued = control_of(control).retry(
            key.dag_id, key.run_id, [key.task_id], downstream, key.map_index
        )
        current = store.runs.get_run(run.dag_id, run.run_id)
        return envelope({"task_ids": requeued, "run": run_dict(current)})

    return handle


def list_instances(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = read_page(request)
        p = request.params
        store.tasks.get_task_instance(TaskKey(p["dag_id"], p["run_id"], p["task_id"]))
        states = tuple(TaskState(s) for s in request.args.get("state") or ())
        query = TaskInstanceQuery(
            dag_id=p["dag_id"], run_id=p["run_id"], task_id=p["task_id"], states=states,
            mapped=True, limit=limit, offset=offset,
        )  # fmt: skip
        found = store.tasks.query_task_instances(query)
        return listing([task_instance_dict(t) for t in found.items], found.total, limit, offset)

    return handle
