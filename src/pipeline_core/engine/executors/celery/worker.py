"""``pipeline-core worker``: a Celery worker whose one task runs tries through ``TryWorker``.

Celery's own thread pool takes messages (one per thread at a time, acknowledged only once
the try is reported); each thread hands its try to the process's worker pool and waits.
SIGTERM is Celery's warm shutdown: running tries finish and are reported, then the worker
stops; tries not yet taken stay with the broker for another worker.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline_core.engine.executors.celery.app import (
    DEFAULT_QUEUE,
    TASK_NAME,
    CelerySettings,
    check_broker,
    make_app,
)
from pipeline_core.engine.executors.celery.runtime import TryWorker, WorkerSettings
from pipeline_core.engine.executors.local import LocalExecutor
from pipeline_core.engine.executors.workers.pool import PoolSettings
from pipeline_core.store.base import Store

if TYPE_CHECKING:
    from celery import Celery

logger = logging.getLogger("pipeline_core.worker")


@dataclass(frozen=True)
class WorkerProcess:
    celery: CelerySettings
    worker: WorkerSettings
    #: Tries run at once (Celery threads, and warm processes of the worker pool).
    concurrency: int = 4
    #: Queues to take tries from (default: the one queue every try goes to).
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    max_tasks_per_worker: int = 0
    kill_grace: float = 5.0
    loglevel: str = "INFO"


def worker_app(settings: CelerySettings, runtime: TryWorker) -> Celery:
    """The Celery app of a worker process: its one task hands each try to ``runtime``."""
    app = make_app(settings)

    @app.task(name=TASK_NAME, acks_late=True, ignore_result=True, shared=False)  # type: ignore[untyped-decorator]
    def run_try(**kwargs: object) -> str:
        return runtime.run(dict(kwargs))

    return app


def run_worker(store: Store, options: WorkerProcess) -> int:
    """Run until shut down; the exit code of the Celery worker. ``ConfigurationError`` when
    the broker does not answer (nothing is taken then)."""
    check_broker(make_app(options.celery), options.celery)
    pool = PoolSettings(
        size=options.concurrency,
        max_size=options.concurrency,
        max_tasks_per_worker=options.max_tasks_per_worker,
    )
    executor = LocalExecutor(
        store, max_workers=options.concurrency, kill_grace=options.kill_grace, pool=pool
    )
    runtime = TryWorker(store, executor, options.worker).start()
    app = worker_app(options.celery, runtime)
    logger.info(
        "worker %s: %d DAG(s) from %s, queues %s, concurrency %d",
        runtime.worker_id,
        len(runtime.dags),
        options.worker.dags_folder,
        ",".join(options.queues),
        options.concurrency,
    )
    worker = app.Worker(
        hostname=f"pipeline-core@{socket.gethostname()}-{os.getpid()}",
        pool_cls="threads",
        concurrency=options.concurrency,
        queues=list(options.queues),
        loglevel=options.loglevel,
        without_mingle=True,
        without_gossip=True,
        quiet=True,
    )
    try:
        worker.start()
    finally:
        runtime.stop()
    return int(worker.exitcode or 0)
