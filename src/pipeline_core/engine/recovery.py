"""What the engine reads from the store for its core: runs as snapshots, the unfinished runs
an earlier engine left, and whether another engine's lease still covers them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime

from pipeline_core.engine import ownership
from pipeline_core.engine.core.messages import RunSnapshot
from pipeline_core.state import RunState
from pipeline_core.store.base import Store
from pipeline_core.store.types import Heartbeat, RunQuery, TaskInstanceQuery

PAGE = 1000


def snapshot(store: Store, dag_id: str, run_id: str) -> RunSnapshot:
    """A run and its task instances (``NotFound`` if there is no such run)."""
    run = store.get_run(dag_id, run_id)
    page = store.query_task_instances(
        TaskInstanceQuery(dag_id=dag_id, run_id=run_id, limit=1_000_000)
    )
    return RunSnapshot(run, tuple(page.items))


def unfinished_runs(store: Store, dag_ids: set[str]) -> Iterator[RunSnapshot]:
    """Queued and running runs of ``dag_ids``, oldest logical date first."""
    offset = 0
    while True:
        page = store.query_runs(
            RunQuery(
                states=(RunState.RUNNING, RunState.QUEUED),
                order_by="logical_date",
                limit=PAGE,
                offset=offset,
            )
        )
        for run in page.items:
            if run.dag_id in dag_ids:
                yield snapshot(store, run.dag_id, run.run_id)
        if not page.has_more:
            return
        offset += PAGE


def other_leases(store: Store, *, me: str, now: datetime, expire_after: float) -> list[Heartbeat]:
    """The other engines whose leases still hold: their running tries are theirs."""
    return ownership.lease_holders(
        store.list_heartbeats("engine"),
        me=me,
        hostname=socket.gethostname(),
        now=now,
        expire_after=expire_after,
    )


def paused_dags(store: Store) -> frozenset[str]:
    page = store.list_dags(is_paused=True, limit=1_000_000)
    return frozenset(record.dag_id for record in page.items)
