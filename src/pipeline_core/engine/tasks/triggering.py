"""The ``trigger_dag`` task: start a run of another DAG and, with ``wait``, end as it ends.

It runs on the engine's own threads (it runs no user code) and creates the run in the
store, as another process would (the engine takes it up from the event log).
Waiting is poking: between pokes the try holds no worker and no pool slot, as a sensor's.
The run's id is ``triggered__<this run>__<this task>`` unless ``run_id`` says otherwise, so
a retry or a restart finds the run it made instead of making another. The triggered run's
conf carries ``triggered_by`` (this run, this task, the chain's depth): a chain of DAGs
triggering each other deeper than ``MAX_DEPTH`` fails, naming the chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline_core.dag.templates import TemplateError
from pipeline_core.engine.core.jobs import Result
from pipeline_core.engine.tasks.context import TaskContext, TaskFailed
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.model import DagRun, TaskSpec, TriggerRequest
from pipeline_core.state import RunState
from pipeline_core.store.base import Store

MAX_DEPTH = 10


def run_trigger_dag(ctx: TaskContext) -> Result:
    if ctx.store is None:
        raise TaskFailed("a trigger_dag task runs on the engine's own threads")
    config = ctx.task.config
    target = str(config["dag_id"])
    try:
        run_id = str(ctx.render(config.get("run_id") or f"triggered__{ctx.run_id}__{ctx.task_id}"))
        conf = ctx.render(dict(config.get("conf") or {}))
    except TemplateError as exc:
        raise TaskFailed(str(exc)) from None
    chain = _chain(ctx)
    if len(chain) > MAX_DEPTH:
        raise TaskFailed(
            f"trigger chain deeper than {MAX_DEPTH}: {' → '.join(chain)} → {target} (a cycle?)"
        )
    by = {"dag_id": ctx.dag_id, "run_id": ctx.run_id, "task_id": ctx.task_id, "chain": chain}
    try:
        run = ctx.store.runs.get_run(target, run_id)
    except NotFound:
        request = TriggerRequest(target, {**conf, "triggered_by": by}, run_id=run_id)
        try:
            run = create_run(ctx.store, request, datetime.now(UTC))
            ctx.log.info(f"triggered run {run_id} of {target}")
        except NotFound:
            raise TaskFailed(f"no DAG '{target}' to trigger") from None
        except Conflict:
            run = ctx.store.runs.get_run(target, run_id)  # made meanwhile: the same request
        except InvalidRequest as exc:
            raise TaskFailed(f"cannot trigger {target}: {exc.message}") from None
        ctx.xcom_push("return_value", {"dag_id": target, "run_id": run_id})
    if not config.get("wait", False):
        return Result()
    if run.state is RunState.SUCCESS:
        return Result()
    if run.state in (RunState.FAILED, RunState.CANCELLED):
        raise TaskFailed(f"triggered run {run_id} of {target} ended {run.state.value}")
    return Result(poke_ok=False)


def create_run(store: Store, request: TriggerRequest, now: datetime) -> DagRun:
    """The run ``request`` asks for, created in the store with the task instances of the DAG's
    stored definition, as a process without an engine makes one (the engine that runs the DAG
    takes it up from the event log). ``NotFound`` for an unknown DAG, ``Conflict`` for a run
    id or idempotency key taken, or an asset update consumed already."""
    record = store.dags.get_dag(request.dag_id)
    write = request.create(specs_of_definition(record.definition), now, record.definition_hash)
    return store.runs.create_run(
        write.run, write.tasks, idempotency=write.idempotency, consumes=write.consumes
    )


def specs_of_definition(definition: Mapping[str, Any] | None) -> tuple[TaskSpec, ...]:
    """The task instances a run starts with, from a stored (serialised) DAG definition: for
    a process without the DAG."""
    return tuple(
        TaskSpec(
            t["task_id"],
            t.get("pool", "default_pool"),
            t.get("priority_weight", 1),
            t.get("retries", 0) + 1,
        )
        for t in (definition or {}).get("tasks", [])
    )


def _chain(ctx: TaskContext) -> list[str]:
    """The DAGs that triggered this run, oldest first, and this one."""
    by: Any = ctx.run.conf.get("triggered_by")
    earlier = by.get("chain") if isinstance(by, dict) else None
    listed = [str(d) for d in earlier] if isinstance(earlier, list) else []
    return [*listed, ctx.dag_id]
