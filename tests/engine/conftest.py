from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline_core.dag.model import DAG
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.model import DagRun, TaskKey
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store import open_store
from pipeline_core.store.types import TaskInstanceQuery
from tests import fixtures
from tests.conftest import REDIS_URL, broker_or_skip, poll_until


def dag_from(text: str, dag_id: str = "t") -> DAG:
    return load_dag_text(textwrap.dedent(text), default_dag_id=dag_id)


class ManualClock:
    """A clock that moves only when told to (``advance``)."""

    def __init__(self) -> None:
        self._wall = datetime(2026, 1, 1, tzinfo=UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += timedelta(seconds=seconds)
        self._monotonic += seconds


class Harness:
    def __init__(self, store, tmp_path) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.tmp_path = tmp_path
        self.engine: Engine | None = None
        self._stops: list[Callable[[], object]] = []
        self._finished = threading.Condition()
        store.add_listener(self._on_events)

    def _on_events(self, events) -> None:  # type: ignore[no-untyped-def]
        with self._finished:
            self._finished.notify_all()

    def start(self, *dags: DAG, clock=None, **settings) -> Engine:  # type: ignore[no-untyped-def]
        """An engine over this store. Tasks run on threads unless ``default_executor`` says
        otherwise: most engine tests observe their callables through ``tests.fixtures``'
        in-process state (test_executors.py runs the task-facing behaviour in every mode)."""
        settings.setdefault("default_executor", "thread")
        if settings["default_executor"] == "celery":
            settings["celery"] = self._celery_worker(dags)
        self.engine = Engine(
            self.store,
            {d.dag_id: d for d in dags},
            settings=EngineSettings(kill_grace=1.0, **settings),
            clock=clock,
        ).start()
        return self.engine

    def _celery_worker(self, dags: tuple[DAG, ...]) -> Any:
        """A Celery worker of this process on Redis (Celery's own embedded test worker),
        running tries of ``dags`` through ``TryWorker`` as ``pipeline-core worker`` does."""
        from celery.contrib.testing.worker import start_worker

        from pipeline_core.engine.executors.celery.app import CelerySettings
        from pipeline_core.engine.executors.celery.runtime import TryWorker, WorkerSettings
        from pipeline_core.engine.executors.celery.worker import worker_app
        from pipeline_core.engine.executors.local import LocalExecutor
        from pipeline_core.engine.executors.workers.pool import PoolSettings

        celery = CelerySettings(broker_or_skip(REDIS_URL))
        executor = LocalExecutor(self.store, kill_grace=1.0, pool=PoolSettings(size=2))
        by_id = {dag.dag_id: dag for dag in dags}
        runtime = TryWorker(
            self.store, executor, WorkerSettings(str(self.tmp_path)), load=lambda: by_id
        ).start()
        app = worker_app(celery, runtime)
        # Redis is polled with BRPOP for this long (kombu's default: 1 s), and a stopping
        # worker waits for the poll to end: a tenth of a second keeps every teardown short.
        options = app.conf.broker_transport_options
        app.conf.broker_transport_options = {**options, "polling_interval": 0.1}
        embedded = start_worker(app, pool="threads", concurrency=2, perform_ping_check=False)
        embedded.__enter__()
        self._stops.append(lambda: embedded.__exit__(None, None, None))
        self._stops.append(runtime.stop)
        return celery

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop(grace=0)
        for stop in self._stops:
            stop()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15) -> None:
        with self._finished:
            assert self._finished.wait_for(predicate, timeout), "timed out waiting"

    def poll(self, predicate: Callable[[], bool], timeout: float = 15) -> None:
        """For conditions outside the store (files, processes) that no event announces."""
        poll_until(predicate, timeout)

    def wait_run(self, run: DagRun, timeout: float = 15) -> DagRun:
        def done() -> bool:
            return self.store.runs.get_run(run.dag_id, run.run_id).state in FINISHED_RUN_STATES

        self.wait_for(done, timeout)
        return self.store.runs.get_run(run.dag_id, run.run_id)

    def states(self, run: DagRun) -> dict[str, str]:
        tis = self.store.tasks.query_task_instances(
            TaskInstanceQuery(dag_id=run.dag_id, run_id=run.run_id)
        )
        return {ti.task_id: ti.state.value for ti in tis.items}

    def ti(self, run: DagRun, task_id: str):  # type: ignore[no-untyped-def]
        return self.store.tasks.get_task_instance(TaskKey(run.dag_id, run.run_id, task_id))


@pytest.fixture
def harness(tmp_path) -> Iterator[Harness]:
    fixtures.reset()
    store = open_store(f"sqlite:///{tmp_path / 'engine.db'}")
    h = Harness(store, tmp_path)
    yield h
    h.stop()
    store.close()
