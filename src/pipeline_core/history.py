"""Run history: pages of runs, task histories, a run's timeline and DAG statistics."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pipeline_core.model import DagRun, TaskInstance, iso
from pipeline_core.store.base import Store
from pipeline_core.store.types import EventQuery, Page, RunQuery, TaskInstanceQuery

TIMELINE_LIMIT = 100_000


class History:
    """Read-side queries over the store, shaped for the CLI and the API."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def runs(self, query: RunQuery) -> Page[DagRun]:
        return self.store.runs.query_runs(query)

    def recent_runs(self, limit: int = 20) -> list[DagRun]:
        """The newest runs across every DAG."""
        return list(
            self.store.runs.query_runs(RunQuery(order_by="-logical_date", limit=limit)).items
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskInstance]:
        self.store.runs.get_run(dag_id, run_id)  # NotFound for an unknown run
        query = TaskInstanceQuery(dag_id=dag_id, run_id=run_id, limit=TIMELINE_LIMIT)
        return list(self.store.tasks.query_task_instances(query).items)

    def task_history(
        self, dag_id: str, task_id: str, limit: int = 100, offset: int = 0
    ) -> Page[TaskInstance]:
        """One task across runs, newest run first."""
        query = TaskInstanceQuery(dag_id=dag_id, task_id=task_id, limit=limit, offset=offset)
        return self.store.tasks.query_task_instances(query)

    def timeline(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's state changes and XCom pushes, in order."""
        self.store.runs.get_run(dag_id, run_id)
        events = self.store.events.read_events(
            EventQuery(dag_id=dag_id, run_id=run_id, limit=TIMELINE_LIMIT)
        )
        items = [{"kind": "event", "at": e.timestamp, **e.to_dict()} for e in events]
        items += [
            {
                "kind": "xcom",
                "at": x.timestamp,
                "type": "xcom.pushed",
                "task_id": x.task_id,
                "key": x.key,
                "size_bytes": x.size_bytes,
                "timestamp": iso(x.timestamp),
            }
            for x in self.store.task_data.list_run_xcom(dag_id, run_id)
        ]
        items.sort(key=lambda item: (item["at"], item.get("seq", 0)))
        for item in items:
            del item["at"]
        return items

    def dag_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        """Run statistics and per-task statistics (zeros for an empty history)."""
        runs = self.store.runs.run_stats(dag_id, since, until)
        tasks = self.store.tasks.task_stats(dag_id, since, until)
        return {
            "dag_id": dag_id,
            "since": iso(since),
            "until": iso(until),
            "runs": {
                "total": runs.total,
                "by_state": dict(runs.by_state),
                "success_rate": runs.success_rate,
                "duration_ms": {
                    "avg": runs.duration_avg,
                    "min": runs.duration_min,
                    "max": runs.duration_max,
                    "p50": runs.duration_p50,
                    "p90": runs.duration_p90,
                    "p99": runs.duration_p99,
                },
            },
            "tasks": [
                {
                    **asdict(t),
                    "last_success": iso(t.last_success),
                    "last_failure": iso(t.last_failure),
                }
                for t in tasks
            ],
        }
