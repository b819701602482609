"""``Engine``: the ``Control`` of one process — its lifecycle, the commands, taking over
what an earlier engine left, and following the event log — over the loop of ``engine.loop``.

A command (trigger, cancel, retry, pause) is one commit of its own, answered once committed:
a trigger writes its run, moves it to running and starts its first tries in one transaction.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline_core.clock import Clock, SystemClock
from pipeline_core.dag.flow import parse_rate
from pipeline_core.dag.model import DAG
from pipeline_core.engine import ownership, recovery
from pipeline_core.engine.core.book import Book
from pipeline_core.engine.core.jobs import Executor
from pipeline_core.engine.core.messages import (
    Abandon,
    Cancel,
    DagsChanged,
    Drain,
    MarkRun,
    MarkTask,
    Pause,
    PoolChanged,
    Resume,
    Retry,
    RunSnapshot,
    Trigger,
    TryCompleted,
)
from pipeline_core.engine.core.pools import missing_pools
from pipeline_core.engine.loop import EngineLoop
from pipeline_core.engine.recovery import Takeover
from pipeline_core.engine.remote import REQUESTED, answer_request
from pipeline_core.engine.settings import EngineSettings, default_executor
from pipeline_core.engine.tasks.versions import VersionLoader
from pipeline_core.engine.telemetry import RunMetrics
from pipeline_core.errors import Conflict, NotFound, PipelineError
from pipeline_core.events import Event
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import DagRun, TriggerRequest, task_specs
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.base import Store
from pipeline_core.store.types import DEFAULT_POOL_SLOTS, DagRecord, Pool

logger = logging.getLogger("pipeline_core.engine")


class Engine:
    """Runs DAG runs: the ``Control`` implementation for one process, over the loop it owns
    (``engine.loop``: the thread, the core and what a wake-up commits)."""

    def __init__(
        self,
        store: Store,
        dags: Mapping[str, DAG] | None = None,
        *,
        executor: Executor | None = None,
        metrics: Metrics | None = None,
        settings: EngineSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        settings = settings or EngineSettings()
        metrics = metrics or NullMetrics()
        executor = executor or default_executor(store, settings, metrics)
        self.store, self.settings, self.metrics = store, settings, metrics
        self.clock: Clock = clock or SystemClock()
        self.executor = executor
        self.loop = EngineLoop(store, executor, settings, metrics, self.clock)
        self.component_id = f"engine-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._dags = dict(dags or {})
        self._telemetry = RunMetrics(self.metrics)
        self.versions = VersionLoader(store)
        self.takeover = Takeover(
            store, settings, self.component_id, self.clock, executor, self.versions
        )

    @property
    def book(self) -> Book:
        """What the core holds (read it on the engine's thread, through ``call``)."""
        return self.loop.core.book

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` on the engine's thread and return its result (or raise its error)."""
        return self.loop.call(fn, timeout)

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> Engine:
        """Start the executor (``ConfigurationError`` if it cannot run tasks; nothing else is
        started then), take over what a previous engine left, and begin."""
        self.executor.start(lambda completion: self.loop.put(TryCompleted(completion)))
        ownership.hold(self.component_id)
        self.loop.start()
        started = self.loop.submit(self._startup)
        # Subscribed once the startup is queued: what is committed from here on reaches the
        # engine after its startup, and nothing in between is missed.
        self.store.feed.subscribe(
            self._on_events, other_processes=self.settings.watch_other_processes
        )
        started.result(self.settings.command_timeout)
        return self

    def stop(self, grace: float = 30.0) -> None:
        """Stop starting tasks, wait up to ``grace`` for running ones, then stop the rest
        (they become ``up_for_retry``, or ``failed`` when out of tries, and resume on the next
        start)."""
        if not self.loop.alive:
            return
        self.store.feed.unsubscribe(self._on_events)
        self.loop.put(Drain())
        deadline = time.monotonic() + grace
        core = self.loop.core
        while time.monotonic() < deadline and self.loop.call(lambda: bool(core.slots.active)):
            time.sleep(0.02)
        with contextlib.suppress(PipelineError):  # a store that is down: recovery's job
            self.loop.call(lambda: self.loop.command(Abandon()))
        self.loop.put(None)
        self.loop.join(10)
        self.executor.shutdown(wait=False)
        ownership.let_go(self.component_id)
        with contextlib.suppress(Exception):  # a store that is gone cannot be told
            self.store.heartbeats.release_heartbeat(self.component_id)

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- Control ------------------------------------------------------------------------
    def set_dags(self, dags: Mapping[str, DAG]) -> None:
        """Replace the DAG definitions the engine runs (new runs use the new definitions)."""
        self.loop.call(lambda: self._set_dags(dict(dags)))

    def trigger(self, request: TriggerRequest) -> DagRun:
        def trigger() -> DagRun:
            dag = self.loop.core.book.dags.get(request.dag_id)
            if dag is None:
                raise NotFound(f"no DAG '{request.dag_id}'")
            create = request.create(task_specs(dag), self.clock.now(), dag.version)
            run: DagRun = self.loop.command(Trigger(create))
            return run

        result: DagRun = self.loop.call(trigger)
        return result

    def trigger_all(self, requests: Sequence[TriggerRequest]) -> list[DagRun | PipelineError]:
        """Several triggers in one commit (one each when that commit fails); each run, or
        the error that refused it."""

        def trigger() -> list[DagRun | PipelineError]:
            creates = []
            for request in requests:
                dag = self.loop.core.book.dags.get(request.dag_id)
                if dag is None:
                    raise NotFound(f"no DAG '{request.dag_id}'")
                creates.append(request.create(task_specs(dag), self.clock.now(), dag.version))
            try:
                answers: list[DagRun | PipelineError] = self.loop.trigger_all(creates)
                return answers
            except PipelineError:
                return [_attempt(functools.partial(self.loop.command, Trigger(c))) for c in creates]

        result: list[DagRun | PipelineError] = self.loop.call(trigger)
        return result

    def cancel(self, dag_id: str, run_id: str) -> DagRun:
        result: DagRun = self._on_run(dag_id, run_id, lambda snap: Cancel(dag_id, run_id, snap))
        return result

    def retry(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None = None,
        include_downstream: bool = True,
        map_index: int | None = None,
        use_latest: bool = False,
    ) -> tuple[DagRun, list[str]]:
        chosen = tuple(task_ids) if task_ids is not None else None
        result: tuple[DagRun, list[str]] = self._on_run(
            dag_id,
            run_id,
            lambda snap: Retry(
                dag_id, run_id, chosen, include_downstream, snap, map_index, use_latest
            ),
            use_latest,
        )
        return result

    def mark_run(self, dag_id: str, run_id: str, state: RunState) -> DagRun:
        result: DagRun = self._on_run(
            dag_id, run_id, lambda snap: MarkRun(dag_id, run_id, state, snap)
        )
        return result

    def mark_task(
        self, dag_id: str, run_id: str, task_id: str, state: TaskState, map_index: int = -1
    ) -> DagRun:
        result: DagRun = self._on_run(
            dag_id, run_id, lambda snap: MarkTask(dag_id, run_id, task_id, state, snap, map_index)
        )
        return result

    def _on_run(
        self,
        dag_id: str,
        run_id: str,
        message: Callable[[RunSnapshot | None], Any],
        use_latest: bool = False,
    ) -> Any:
        """Decide a command on a run: with the run as stored (and its DAG version, unless
        the latest is asked for) when the core does not hold it."""

        def command() -> Any:
            snapshot = None
            if not self.loop.core.book.knows((dag_id, run_id)):
                version = None if use_latest else self._version_of
                snapshot = recovery.snapshot(self.store, dag_id, run_id, version)
            return self.loop.command(message(snapshot))

        return self.loop.call(command)

    def _version_of(self, run: DagRun) -> DAG | None:
        return self.versions.dag_for(run, self.loop.core.book.dags.get(run.dag_id))

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        def set_paused() -> DagRecord:
            record = self.store.dags.set_paused(dag_id, paused)
            self.loop.command(Pause(dag_id, paused))
            return record

        result: DagRecord = self.loop.call(set_paused)
        return result

    # --- startup, DAGs, pools, heartbeat, recovery -------------------------------------------
    def _startup(self) -> None:
        sync_pools(self.store, self.loop, self._dags)
        self.loop.decide(DagsChanged(self._dags, recovery.paused_dags(self.store)))
        self._heartbeat()
        self.takeover.recover(set(self._dags), self.loop)
        self.loop.flush()

    def _set_dags(self, dags: dict[str, DAG]) -> None:
        held = self.loop.core.book.dags
        changed = {d: dag for d, dag in dags.items() if held.get(d) is not dag}
        sync_pools(self.store, self.loop, changed)  # the others' tasks are not read again
        new: list[str] = self.loop.decide(DagsChanged(dags, recovery.paused_dags(self.store))).reply
        if new:
            self.takeover.recover(set(new), self.loop)
        self.loop.flush()

    def _heartbeat(self) -> None:
        try:
            self.store.heartbeats.heartbeat(
                self.component_id, kind="engine", hostname=socket.gethostname(), pid=os.getpid()
            )
            self.metrics.counter("engine.heartbeat")
        except Exception:
            logger.exception("heartbeat failed")
        next_beat = self.clock.monotonic() + self.settings.heartbeat_interval
        self.loop.timers.at(next_beat, self._heartbeat)
        if self.takeover.contested and not self.loop.core.draining:
            self.takeover.recover(
                self.takeover.contested & set(self.loop.core.book.dags), self.loop
            )

    # --- the event log ---------------------------------------------------------------------
    def _on_events(self, events: list[Event]) -> None:
        """Committed events, other processes' included: runs created elsewhere, control
        requests, pause and pool changes. Called by the store's feed; only queues work."""
        for event in events:
            payload = event.payload
            if event.type == REQUESTED:
                self.loop.put(functools.partial(answer_request, self, self.store, dict(payload)))
            elif event.type == "run.state_changed" and payload.get("previous_state") is None:
                self.loop.put(
                    functools.partial(self._adopt, event.dag_id or "", event.run_id or "")
                )
            elif event.type == "dag.updated" and "is_paused" in payload:
                self.loop.put(Pause(event.dag_id or "", bool(payload["is_paused"])))
            elif event.type == "pool.updated":
                gone = payload.get("change") == "deleted"
                self.loop.put(
                    PoolChanged(payload["pool"], None) if gone else told(pool_of(payload))
                )
        self._telemetry(events)

    def _adopt(self, dag_id: str, run_id: str) -> None:
        """A run created by another process (``pipeline-core api``): run it if still queued."""
        if dag_id not in self.loop.core.book.dags or self.loop.core.book.knows((dag_id, run_id)):
            return
        with contextlib.suppress(NotFound):
            snapshot = recovery.snapshot(
                self.store, dag_id, run_id, self.takeover.version_of(self.loop)
            )
            if snapshot.run.state is RunState.QUEUED:
                self.loop.decide(Resume(snapshot))


def sync_pools(store: Store, loop: EngineLoop, dags: Mapping[str, DAG]) -> None:
    """Create the pools the tasks of ``dags`` name that nobody made (default size; resize
    them through the API), and tell the core every pool's size."""
    existing = [pool.name for pool in store.pools.list_pools()]
    for name, dag_id in missing_pools(existing, dags.values()).items():
        with contextlib.suppress(Conflict):  # another process may have made it meanwhile
            store.pools.create_pool(Pool(name, DEFAULT_POOL_SLOTS, f"created for DAG '{dag_id}'"))
    for pool in store.pools.list_pools():
        loop.decide(told(pool))


def told(pool: Pool) -> PoolChanged:
    """What the core is told of a pool: its size and rate limit (tries a second)."""
    per_second = parse_rate(pool.rate) if pool.rate else None
    return PoolChanged(pool.name, pool.slots, per_second, pool.burst)


def pool_of(payload: Mapping[str, Any]) -> Pool:
    """The pool a ``pool.updated`` event tells of."""
    return Pool(payload["pool"], payload["slots"], payload.get("description"),
                payload.get("rate"), int(payload.get("burst") or 1))  # fmt: skip


def _attempt(make: Callable[[], Any]) -> Any:
    """What ``make`` answers, or the error that refused it."""
    try:
        return make()
    except PipelineError as exc:
        return exc
