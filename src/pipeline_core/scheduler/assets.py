"""``AssetDriver``: the runs that asset updates start.

The scheduler calls ``step`` on every pass of its loop (an ``asset.updated`` event, a
finished run and an unpause each bring one). For each DAG scheduled on assets, the updates
waiting for it are planned into runs (``dag.assets.plan``: one per satisfied condition, or
with ``collapse`` one for all of them once no run of the DAG is queued or running); each run
is created with the updates it consumes, in one transaction (``CreateRun.consumes``), so an
update starts one run at most however often this is decided — after a crash, on a standby
that took over, or twice at once. A run's id is ``asset_triggered__<its last update>``, and
its conf's ``triggering_assets`` lists the updates it consumed. A paused DAG's updates wait.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pipeline_core.dag.assets import Update, plan
from pipeline_core.dag.model import DAG
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound, PipelineError
from pipeline_core.metrics import Metrics
from pipeline_core.model import RunType, TriggerRequest, iso
from pipeline_core.state import RunState
from pipeline_core.store.base import Store
from pipeline_core.store.types import AssetUpdate, RunQuery

logger = logging.getLogger("pipeline_core.scheduler")
#: Runs created in one commit at most.
BATCH = 200


class AssetDriver:
    def __init__(self, store: Store, runner: Control, metrics: Metrics) -> None:
        self.store, self.runner, self.metrics = store, runner, metrics

    def step(self, dags: Mapping[str, DAG]) -> None:
        for dag_id in self.store.assets.consumers_waiting():
            dag = dags.get(dag_id)
            if dag is None or dag.assets is None:
                continue
            try:
                self._start_runs(dag)
            except PipelineError as exc:
                logger.warning("asset-triggered runs of %s wait: %s", dag_id, exc)

    def _start_runs(self, dag: DAG) -> None:
        assert dag.assets is not None
        if self._paused(dag.dag_id):
            return
        collapse = dag.assets.collapse
        if collapse and self._active(dag.dag_id):
            return  # merged into the run that follows this one
        waiting = {u.id: u for u in self.store.assets.waiting(dag.dag_id)}
        pending: dict[str, list[Update]] = {}
        for update in waiting.values():
            pending.setdefault(update.uri, []).append(Update(update.id, update.uri))
        requests = []
        for consumed in plan(dag.assets.condition, pending, collapse=collapse):
            updates = [waiting[u.id] for u in consumed]
            requests.append(
                TriggerRequest(
                    dag.dag_id,
                    {"triggering_assets": [_described(u) for u in updates]},
                    run_id=f"asset_triggered__{updates[-1].id}",
                    run_type=RunType.ASSET_TRIGGERED,
                    consumes=tuple(u.id for u in updates),
                )
            )
        for start in range(0, len(requests), BATCH):  # runs made together, one commit each
            for answer in self.runner.trigger_all(requests[start : start + BATCH]):
                if isinstance(answer, Conflict):  # another scheduler made it: its updates
                    logger.info("asset-triggered run of %s not made: %s", dag.dag_id, answer)
                elif isinstance(answer, PipelineError):
                    raise answer
                else:
                    self.metrics.counter("scheduler.asset_runs_created", dag_id=dag.dag_id)

    def _paused(self, dag_id: str) -> bool:
        try:
            return self.store.dags.get_dag(dag_id).is_paused
        except NotFound:
            return True

    def _active(self, dag_id: str) -> bool:
        query = RunQuery(dag_id=dag_id, states=(RunState.QUEUED, RunState.RUNNING), limit=0)
        return self.store.runs.query_runs(query).total > 0


def _described(update: AssetUpdate) -> dict[str, object]:
    """An update as a run's conf names it."""
    source = (
        {"dag_id": update.dag_id, "run_id": update.run_id, "task_id": update.task_id}
        if update.dag_id
        else None
    )
    return {"id": update.id, "uri": update.uri, "extra": dict(update.extra),
            "timestamp": iso(update.timestamp), "source": source}  # fmt: skip
