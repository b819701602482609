"""How an engine is set up: its settings, and the local executor they describe."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline_core.dag.mapping import DEFAULT_MAX_LENGTH
from pipeline_core.engine.core.jobs import Executor
from pipeline_core.engine.executors.local import LocalExecutor
from pipeline_core.engine.executors.workers.pool import PoolSettings
from pipeline_core.metrics import Metrics
from pipeline_core.store.base import Store

if TYPE_CHECKING:
    from pipeline_core.engine.executors.celery.app import CelerySettings


def default_workers() -> int:
    """Warm worker processes: one per core, at least two."""
    return max(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class EngineSettings:
    #: Where task code runs unless a task says otherwise: worker, process, thread or celery.
    default_executor: str = "worker"
    #: Worker processes kept started (the pool grows up to ``max_workers`` when all are busy).
    workers: int = field(default_factory=default_workers)
    #: At most this many tries at once in worker processes, and on threads.
    max_workers: int = 32
    #: Replace a worker process after this many tries (0: never).
    max_tasks_per_worker: int = 0
    #: Modules imported once before workers are forked, so every worker starts with them.
    worker_preload: tuple[str, ...] = ()
    xcom_max_bytes: int = 1024 * 1024
    #: Instances a mapped task may have unless it says otherwise (``max_map_length``).
    max_map_length: int = DEFAULT_MAX_LENGTH
    kill_grace: float = 5.0
    heartbeat_interval: float = 5.0
    #: An engine whose heartbeat (its lease) is this old no longer owns its runs.
    orphan_after: float = 30.0
    command_timeout: float = 30.0
    #: Follow the event log for runs and requests from other processes (``pipeline-core api``).
    watch_other_processes: bool = True
    #: This engine holds the ``active-engine`` claim (``pipeline-core scheduler``): no other
    #: engine can be running, so every other engine's lease has ended and its runs are taken
    #: over at once.
    sole_engine: bool = False
    #: Send tries of ``executor: celery`` tasks (all that run code, with ``default_executor``
    #: celery) to Celery workers through this broker.
    celery: CelerySettings | None = None


def default_executor(store: Store, settings: EngineSettings, metrics: Metrics) -> Executor:
    """The executor of an engine that was given none: threads and the worker pool here, and
    Celery workers when the settings name a broker."""
    if settings.celery is None:
        return local_executor(store, settings, metrics)
    from pipeline_core.engine.executors.celery.executor import CeleryExecutor
    from pipeline_core.engine.executors.routing import RoutingExecutor

    # Tasks that run code go to Celery by default there, so the local default is threads:
    # the worker pool starts only for a task that asks for it.
    local_default = "thread" if settings.default_executor == "celery" else None
    local = local_executor(store, settings, metrics, default_mode=local_default)
    remote = CeleryExecutor(
        store, settings.celery, metrics=metrics, xcom_max_bytes=settings.xcom_max_bytes
    )
    return RoutingExecutor(local, remote, default_mode=settings.default_executor)


def local_executor(
    store: Store, settings: EngineSettings, metrics: Metrics, *, default_mode: str | None = None
) -> LocalExecutor:
    """Threads and the worker pool here."""
    pool = PoolSettings(
        size=settings.workers,
        max_size=max(settings.workers, settings.max_workers),
        max_tasks_per_worker=settings.max_tasks_per_worker,
        preload=settings.worker_preload,
    )
    return LocalExecutor(
        store,
        max_workers=settings.max_workers,
        kill_grace=settings.kill_grace,
        xcom_max_bytes=settings.xcom_max_bytes,
        metrics=metrics,
        default_mode=default_mode or settings.default_executor,
        pool=pool,
    )
