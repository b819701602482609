"""``Control``: what the scheduler, the CLI and the API may ask of an engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pipeline_core.errors import PipelineError
from pipeline_core.model import DagRun, TriggerRequest
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import DagRecord


class Control(Protocol):
    def trigger(self, request: TriggerRequest) -> DagRun:
        """Create a run (``Conflict`` if its id or scheduled date is taken) and start it when
        the DAG is unpaused and below ``max_active_runs``."""
        ...

    def trigger_all(self, requests: Sequence[TriggerRequest]) -> list[DagRun | PipelineError]:
        """Several triggers at once (one commit where the engine can): each run, or the
        error that refused it."""
        ...

    def cancel(self, dag_id: str, run_id: str) -> DagRun:
        """Kill running tasks, cancel the rest; ``Conflict`` if the run already finished."""
        ...

    def retry(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None = None,
        include_downstream: bool = True,
        map_index: int | None = None,
        use_latest: bool = False,
    ) -> tuple[DagRun, list[str]]:
        """Re-queue failed, upstream_failed and cancelled tasks (or ``task_ids``) and, by
        default, their downstream; returns the run and the re-queued ids. ``Conflict`` when
        there is nothing to retry. ``map_index``: only that instance of the one mapped task
        of ``task_ids`` (a mapped task re-queued whole is mapped again). The run's own DAG
        version runs, unless ``use_latest`` moves the run to the DAG's latest version (its new
        tasks added; its unfinished tasks the latest lacks removed)."""
        ...

    def mark_run(self, dag_id: str, run_id: str, state: RunState) -> DagRun:
        """Set a run to ``success`` or ``failed`` by hand: its unfinished tasks (and, for
        ``success``, its failed ones) take the matching state, running tries are killed.
        ``Conflict`` when it is in that state already."""
        ...

    def mark_task(
        self, dag_id: str, run_id: str, task_id: str, state: TaskState, map_index: int = -1
    ) -> DagRun:
        """Set a task instance to ``success``, ``failed`` or ``skipped`` by hand (a running
        try is killed); its downstream follows the trigger rules. Returns the run. A mapped
        task's instances take the state with it; ``map_index`` marks one of them (its task
        then follows its instances)."""
        ...

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord: ...
