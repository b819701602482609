"""What the engine reads from the store for its core: runs as snapshots, the unfinished runs
an earlier engine left, and whether another engine's lease still covers them; and
``Takeover``, which resumes those runs."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline_core.clock import Clock
from pipeline_core.dag.model import DAG
from pipeline_core.engine import ownership
from pipeline_core.engine.core.jobs import Executor
from pipeline_core.engine.core.messages import Resume, RunSnapshot
from pipeline_core.engine.settings import EngineSettings
from pipeline_core.engine.tasks.versions import VersionLoader
from pipeline_core.model import DagRun
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.base import Store
from pipeline_core.store.types import Heartbeat, RunQuery, TaskInstanceQuery

if TYPE_CHECKING:
    from pipeline_core.engine.loop import EngineLoop

logger = logging.getLogger("pipeline_core.engine")
PAGE = 1000


#: The DAG version a run runs when not the latest the core holds (``None``: the latest).
VersionOf = Callable[[DagRun], DAG | None]


def snapshot(
    store: Store, dag_id: str, run_id: str, version: VersionOf | None = None
) -> RunSnapshot:
    """A run and its task instances, mapped tasks' instances too, and its DAG version if
    ``version`` tells it (``NotFound`` if there is no such run)."""
    run = store.runs.get_run(dag_id, run_id)
    page = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id=dag_id, run_id=run_id, limit=10_000_000, mapped=None)
    )
    return RunSnapshot(run, tuple(page.items), version(run) if version else None)


def unfinished_runs(
    store: Store, dag_ids: set[str], version: VersionOf | None = None
) -> Iterator[RunSnapshot]:
    """Queued and running runs of ``dag_ids``, oldest logical date first."""
    offset = 0
    while True:
        page = store.runs.query_runs(
            RunQuery(
                states=(RunState.RUNNING, RunState.QUEUED),
                order_by="logical_date",
                limit=PAGE,
                offset=offset,
            )
        )
        for run in page.items:
            if run.dag_id in dag_ids:
                yield snapshot(store, run.dag_id, run.run_id, version)
        if not page.has_more:
            return
        offset += PAGE


def other_leases(store: Store, *, me: str, now: datetime, expire_after: float) -> list[Heartbeat]:
    """The other engines whose leases still hold: their running tries are theirs."""
    return ownership.lease_holders(
        store.heartbeats.list_heartbeats("engine"),
        me=me,
        hostname=socket.gethostname(),
        now=now,
        expire_after=expire_after,
    )


def paused_dags(store: Store) -> frozenset[str]:
    page = store.dags.list_dags(is_paused=True, limit=1_000_000)
    return frozenset(record.dag_id for record in page.items)


class Takeover:
    """Resuming runs an earlier engine left. Runs of another engine whose lease still holds
    are left to it (``contested``) and looked at again on every heartbeat."""

    def __init__(
        self,
        store: Store,
        settings: EngineSettings,
        component_id: str,
        clock: Clock,
        executor: Executor,
        versions: VersionLoader,
    ) -> None:
        self.store, self.settings, self.clock, self.executor = store, settings, clock, executor
        self.component_id = component_id
        self.versions = versions
        #: DAGs with runs whose running tries another engine's lease still covers.
        self.contested: set[str] = set()

    def recover(self, dag_ids: set[str], loop: EngineLoop) -> None:
        """Resume runs left by an earlier engine. Runs of another engine whose lease holds
        are left to it and looked at again on every heartbeat, so none is skipped for good."""
        holders = (
            []
            if self.settings.sole_engine
            else other_leases(
                self.store,
                me=self.component_id,
                now=self.clock.now(),
                expire_after=self.settings.orphan_after,
            )
        )
        contested: set[str] = set()
        snapshots = [
            snapshot
            for snapshot in unfinished_runs(self.store, dag_ids, self.version_of(loop))
            if not loop.core.book.knows(snapshot.run.key)
        ]
        elsewhere = self.executor.running_elsewhere(
            [
                (ti.key, ti.try_number)
                for snapshot in snapshots
                for ti in snapshot.task_instances
                if ti.state is TaskState.RUNNING
            ]
        )
        for snapshot in snapshots:
            running = any(ti.state is TaskState.RUNNING for ti in snapshot.task_instances)
            if running and holders:
                if snapshot.run.dag_id not in self.contested:
                    owners = ", ".join(b.component_id for b in holders)
                    logger.info(
                        "run %s has tasks running under %s; waiting", snapshot.run.key, owners
                    )
                contested.add(snapshot.run.dag_id)
                continue
            adopt = frozenset(
                ti.key for ti in snapshot.task_instances if (ti.key, ti.try_number) in elsewhere
            )
            loop.decide(Resume(snapshot, adopt))
        self.contested = (self.contested - dag_ids) | contested

    def version_of(self, loop: EngineLoop) -> VersionOf:
        """Each run's version, or the latest when its version cannot be rebuilt (a run taken
        over is never left stuck for want of its version)."""
        latest = loop.core.book.dags
        return lambda run: self.versions.dag_or_latest(run, latest.get(run.dag_id))
