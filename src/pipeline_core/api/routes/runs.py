"""``/dags/:dag_id/runs``: list, trigger, get, cancel and retry runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import HTTPError, Request, Response, bad_request, envelope, listing
from pipeline_core.api.params import date, page, strings
from pipeline_core.api.serialize import run_dict, task_instance_dict
from pipeline_core.engine.control import Control
from pipeline_core.model import RUN_TYPES, DagRun, RunType
from pipeline_core.state import RunState
from pipeline_core.store.base import Store
from pipeline_core.store.types import RUN_ORDER_FIELDS, RunQuery, TaskInstanceQuery

DATE_FILTERS = tuple(
    f"{c}_{s}" for c in ("logical_date", "start_date", "end_date") for s in ("gte", "lte")
)
MAX_NOTE = 1000


def list_runs(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request, {"state", "run_type", "order_by", *DATE_FILTERS})
        dag_id = request.params["dag_id"]
        store.get_dag(dag_id)
        states = strings(request, "state")
        bad = [s for s in states if s not in {r.value for r in RunState}]
        if bad:
            raise bad_request(
                f"unknown state(s) {', '.join(bad)}; use {', '.join(r.value for r in RunState)}"
            )
        run_types = strings(request, "run_type")
        if any(t not in RUN_TYPES for t in run_types):
            raise bad_request(f"run_type must be one of {', '.join(RUN_TYPES)}")
        order_by = (request.query.get("order_by") or ["-logical_date"])[-1]
        if order_by.lstrip("-") not in RUN_ORDER_FIELDS:
            raise bad_request(
                f"cannot order by {order_by!r}; "
                f"use {', '.join(RUN_ORDER_FIELDS)} with an optional '-'"
            )
        query = RunQuery(
            dag_id=dag_id,
            states=tuple(RunState(s) for s in states),
            run_types=tuple(RunType(t) for t in run_types),
            order_by=order_by,
            limit=limit,
            offset=offset,
            **{name: date(request, name) for name in DATE_FILTERS},
        )
        found = store.query_runs(query)
        return listing([run_dict(r) for r in found.items], found.total, limit, offset)

    return handle


def get_run(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        page(request, set())
        run = store.get_run(request.params["dag_id"], request.params["run_id"])
        return envelope(run_with_tasks(store, run))

    return handle


def run_with_tasks(store: Store, run: DagRun) -> dict[str, Any]:
    """A run's answer with its task instances."""
    tis = store.query_task_instances(
        TaskInstanceQuery(dag_id=run.dag_id, run_id=run.run_id, limit=100_000)
    )
    return {**run_dict(run), "task_instances": [task_instance_dict(t) for t in tis.items]}


def cancel_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        run = store.get_run(request.params["dag_id"], request.params["run_id"])
        return envelope(run_dict(control_of(control).cancel(run.dag_id, run.run_id)))

    return handle


def retry_run(store: Store, control: Control | None) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.json_object({"task_ids", "include_downstream"})
        task_ids = body.get("task_ids")
        if task_ids is not None and (
            not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids)
        ):
            raise bad_request("'task_ids' must be a list of task ids")
        downstream = body.get("include_downstream", True)
        if not isinstance(downstream, bool):
            raise bad_request("'include_downstream' must be true or false")
        run = store.get_run(request.params["dag_id"], request.params["run_id"])
        retried, requeued = control_of(control).retry(run.dag_id, run.run_id, task_ids, downstream)
        return envelope({"run": run_dict(retried), "requeued_task_ids": requeued})

    return handle


def control_of(control: Control | None) -> Control:
    if control is None:
        raise HTTPError(503, "unavailable", "no engine is connected to carry this out")
    return control
