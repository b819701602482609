"""Engine metrics read off the event log: every counter and duration follows from a committed
``task.state_changed`` or ``run.state_changed`` event, so the engine's code records none and
the figures agree with the history whoever wrote it."""

from __future__ import annotations

from datetime import datetime

from pipeline_core.events import Event
from pipeline_core.metrics import Metrics

#: Forget start times beyond this many open tries or runs (runs deleted while running).
MAX_OPEN = 100_000
_TASK_COUNTERS = {"running": "task.started", "success": "task.completed"}
_RUN_COUNTERS = {"success": "completed", "failed": "failed", "cancelled": "cancelled"}


class RunMetrics:
    """Subscribe an instance to ``store.feed``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._started: dict[tuple[str | None, ...], datetime] = {}

    def __call__(self, events: list[Event]) -> None:
        for event in events:
            if event.type == "task.state_changed":
                self._task(event)
            elif event.type == "run.state_changed":
                self._run(event)
        if len(self._started) > MAX_OPEN:
            self._started.clear()

    def _task(self, event: Event) -> None:
        new, previous = event.payload.get("new_state"), event.payload.get("previous_state")
        labels = {"dag_id": event.dag_id or "", "task_id": event.task_id or ""}
        key = (event.dag_id, event.run_id, event.task_id)
        if new in _TASK_COUNTERS:
            self.metrics.counter(_TASK_COUNTERS[new], **labels)
        if new == "up_for_retry":
            self.metrics.counter("task.retried", **labels)
        elif new == "failed" and previous == "running":
            self.metrics.counter("task.failed", **labels)
        if new == "running":
            self._started[key] = event.timestamp
        elif previous == "running" and (start := self._started.pop(key, None)) is not None:
            elapsed = (event.timestamp - start).total_seconds() * 1000
            self.metrics.histogram("task.duration_ms", elapsed, **labels)

    def _run(self, event: Event) -> None:
        new, previous = event.payload.get("new_state"), event.payload.get("previous_state")
        dag_id = event.dag_id or ""
        key = (event.dag_id, event.run_id)
        if previous is None:
            self.metrics.counter("dag_run.created", dag_id=dag_id)
        elif new == "running":
            if previous == "queued":
                self.metrics.counter("dag_run.started", dag_id=dag_id)
            self._started.setdefault(key, event.timestamp)
        elif new in _RUN_COUNTERS:
            self.metrics.counter(f"dag_run.{_RUN_COUNTERS[new]}", dag_id=dag_id)
            start = self._started.pop(key, None)
            if start is not None:
                elapsed = (event.timestamp - start).total_seconds() * 1000
                self.metrics.histogram("dag_run.duration_ms", elapsed, dag_id=dag_id)
