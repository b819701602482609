"""``/dags/:dag_id/runs``: list, trigger, get, cancel and retry runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import HTTPError, Request, Response, envelope, listing
from pipeline_core.api.openapi.operation import DAG, PAGE, RUN, Operation, Param, many
from pipeline_core.api.openapi.parts import DATE_TIME, ID, closed, envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.params import page
from pipeline_core.api.serialize import run_dict, with_mapped
from pipeline_core.engine.control import Control
from pipeline_core.model import RUN_TYPES, DagRun, RunType
from pipeline_core.state import RunState
from pipeline_core.store.base import Store
from pipeline_core.store.types import RUN_ORDER_FIELDS, RunQuery, TaskInstanceQuery

DATE_FILTERS = tuple(
    f"{c}_{s}" for c in ("logical_date", "start_date", "end_date") for s in ("gte", "lte")
)
ORDER = [f"{sign}{field}" for field in RUN_ORDER_FIELDS for sign in ("", "-")]

LIST = Operation(
    "list_runs",
    "runs",
    "List runs",
    "A DAG's runs, filtered by state, type and dates, ordered by a field.",
    envelope_of(ref("Run"), listing=True),
    (
        *DAG,
        *PAGE,
        Param("state", schema=many(s.value for s in RunState)),
        Param("run_type", schema=many(RUN_TYPES)),
        Param("order_by", schema={"enum": ORDER}, description="a field, '-' first: newest first"),
        *(Param(name, schema=DATE_TIME) for name in DATE_FILTERS),
    ),
    read=True,
)
GET = Operation(
    "get_run",
    "runs",
    "A run with its task instances",
    "A run with all its task instances. A finished run's answer is kept, so asking again "
    "costs almost nothing.",
    envelope_of(ref("RunDetail")),
    RUN,
    read=True,
)
CANCEL = Operation(
    "cancel_run",
    "runs",
    "Cancel a run (it stays readable, cancelled)",
    "Cancel a run: running tries are killed, unfinished tasks are cancelled. The run stays "
    "in the history, readable, as cancelled.",
    envelope_of(ref("Run")),
    RUN,
)
RETRY = Operation(
    "retry_run",
    "runs",
    "Retry failed tasks",
    "Queue failed, cancelled or upstream-failed tasks again (all, or the given ones with or "
    "without their downstream tasks), in the DAG version the run was made with; "
    "`use_latest` moves the run to the DAG's latest version first.",
    envelope_of(ref("Retry")),
    RUN,
    body=closed(
        task_ids={"type": ["array", "null"], "items": ID},
        include_downstream={"type": "boolean"},
        use_latest={"type": "boolean"},
    ),
    example={"task_ids": ["load"], "include_downstream": True},
)


def list_runs(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        dag_id = request.params["dag_id"]
        store.dags.get_dag(dag_id)
        args = request.args
        query = RunQuery(
            dag_id=dag_id,
            states=tuple(RunState(s) for s in args.get("state", ())),
            run_types=tuple(RunType(t) for t in args.get("run_type", ())),
            order_by=args.get("order_by", "-logical_date"),
            limit=limit,
            offset=offset,
            **{name: args.get(name) for name in DATE_FILTERS},
        )
        found = store.runs.query_runs(query)
        return listing([run_dict(r) for r in found.items], found.total, limit, offset)

    return handle


def get_run(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        run = store.runs.get_run(request.params["dag_id"], request.params["run_id"])
        return envelope(run_with_tasks(store, run))

    return handle


def run_with_tasks(store: Store, run: DagRun) -> dict[str, Any]:
    """A run's answer with its task instances."""
    tis = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id=run.dag_id, run_id=run.run_id, limit=100_000)
    )
    mapped = store.tasks.mapped_counts(run.dag_id, run.run_id)
    return {**run_dict(run), "task_instances": with_mapped(tis.items, mapped)}


def cancel_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        run = store.runs.get_run(request.params["dag_id"], request.params["run_id"])
        return envelope(run_dict(control_of(control).cancel(run.dag_id, run.run_id)))

    return handle


def retry_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        task_ids, downstream = (
            request.fields.get("task_ids"),
            request.fields.get("include_downstream", True),
        )
        latest = request.fields.get("use_latest", False)
        run = store.runs.get_run(request.params["dag_id"], request.params["run_id"])
        retried, requeued = control_of(control).retry(
            run.dag_id, run.run_id, task_ids, downstream, use_latest=latest
        )
        return envelope({"run": run_dict(retried), "requeued_task_ids": requeued})

    return handle


def control_of(control: Control | None) -> Control:
    if control is None:
        raise HTTPError(503, "unavailable", "no engine is connected to carry this out")
    return control
