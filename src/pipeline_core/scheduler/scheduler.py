"""The scheduling loop: creates scheduled runs when they fall due.

It sleeps until the earliest due fire time, a housekeeping deadline (heartbeat, folder
re-scan) or a wake-up (a run finished, a DAG was unpaused or changed) — not on a fixed
tick. ``tick(now)`` holds every decision and takes the time as an argument, so tests drive
it with a fake clock.
"""

from __future__ import annotations

import heapq
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from pipeline_core.dag.model import DAG, EXECUTORS
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.events import Event
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import RunType, TriggerRequest, iso, utcnow
from pipeline_core.scheduler.assets import AssetDriver
from pipeline_core.scheduler.backfills import BackfillDriver
from pipeline_core.scheduler.schedule import Schedule
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.scheduler.watch import FolderWatch
from pipeline_core.state import RunState
from pipeline_core.store.base import Store
from pipeline_core.store.types import RunQuery

logger = logging.getLogger("pipeline_core.scheduler")
_EPSILON = timedelta(microseconds=1)


class Runner(Control, Protocol):
    """What the scheduler needs of an engine: its controls, and being told the DAGs."""

    def set_dags(self, dags: Mapping[str, DAG]) -> None: ...


#: Seconds of DAG file loading between two looks at what else is due: a large folder is
#: loaded in steps (the API answers meanwhile, and each step's DAGs are listed as it ends).
LOAD_STEP = 0.5
#: The first step is shorter: the API answers once it ended.
FIRST_STEP = 0.2


@dataclass(frozen=True)
class SchedulerSettings:
    #: Seconds between comparisons of every DAG file's ``stat`` with the last one (a file is
    #: read only when it changed); with ``watch``, changes are also seen as they happen.
    rescan_interval: float = 30.0
    watch: bool = True
    heartbeat_interval: float = 5.0
    #: The executors the engine has: a DAG needing another one does not load.
    executors: tuple[str, ...] = EXECUTORS
    #: Where parsed YAML files are kept across restarts (``scheduler.parsed``); None: not.
    parsed_cache: Path | None = None


def _folder_sync(
    store: Store, folder: str | None, settings: SchedulerSettings, clock: Callable[[], datetime]
) -> DagSync | None:
    if not folder:
        return None
    return DagSync(store, folder, executors=settings.executors, clock=clock,
                   parsed_cache=settings.parsed_cache)  # fmt: skip


@dataclass
class _DagState:
    schedule: Schedule
    last: datetime | None  # logical date of the newest scheduled run
    next_fire: datetime | None


class Scheduler:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        dags_folder: str | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
        settings: SchedulerSettings | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.settings = settings or SchedulerSettings()
        self.sync = _folder_sync(store, dags_folder, self.settings, clock)
        self.watch = FolderWatch(self.sync.root, self.wake) if self.sync else None
        self.clock = clock
        self.metrics: Metrics = metrics or NullMetrics()
        self.component_id = f"scheduler-{socket.gethostname()}-{os.getpid()}"
        self.dags: dict[str, DAG] = {}
        self._synced: dict[str, DAG] | None = None
        self._states: dict[str, _DagState] = {}
        self._due: list[tuple[datetime, str]] = []
        self._parked: list[tuple[datetime, str]] = []
        self._wake = threading.Condition()
        self._woken = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.last_heartbeat: datetime | None = None
        self.backfills = BackfillDriver(store, runner)
        self.assets = AssetDriver(store, runner, self.metrics)

    # --- DAGs ----------------------------------------------------------------------------
    def set_dags(self, dags: dict[str, DAG]) -> None:
        """Schedule these DAGs from now on; a new or changed DAG's state is read back from the
        store's runs, an unchanged one keeps its own."""
        old, states = self.dags, self._states
        self.dags = dict(dags)
        self.runner.set_dags(self.dags)
        self._states = {}
        for dag in self.dags.values():
            kept = states.get(dag.dag_id)
            if kept is not None and old.get(dag.dag_id) is dag:
                self._states[dag.dag_id] = kept
            elif (schedule := Schedule.of(dag)) is not None:
                last = self._latest_scheduled(dag.dag_id)
                self._states[dag.dag_id] = _DagState(schedule, last, None)
        self._rebuild_due(self.clock())
        self.wake()

    def refresh_dags(
        self, hints: Collection[str] | None = None, budget: float | None = None
    ) -> None:
        """Load what changed in the DAGs folder (all of it, or the paths a watcher named; for
        at most ``budget`` seconds, the rest next time) and schedule what it holds now."""
        if self.sync is None:
            return
        dags = self.sync.refresh(hints, budget)
        if dags is not self._synced:
            self._synced = dags
            self.set_dags(dags)

    def _latest_scheduled(self, dag_id: str) -> datetime | None:
        page = self.store.runs.query_runs(
            RunQuery(
                dag_id=dag_id, run_types=(RunType.SCHEDULED,), order_by="-logical_date", limit=1
            )
        )
        return page.items[0].logical_date if page.items else None

    def _rebuild_due(self, now: datetime) -> None:
        self._due, self._parked = [], []
        for dag_id, state in self._states.items():
            if state.next_fire is None:  # new or changed (a kept one's is known, or parked)
                after = state.last or _before(state.schedule, now)
                state.next_fire = state.schedule.next_after(after)
            if state.next_fire is not None:
                self._due.append((state.next_fire, dag_id))
        heapq.heapify(self._due)

    # --- decisions -----------------------------------------------------------------------
    def tick(self, now: datetime) -> datetime | None:
        """Create every run due at ``now``; returns when the next one falls due.

        DAGs that are due but paused or at ``max_active_runs`` are parked and looked at again
        on the next tick (a finished run or an unpause wakes the loop for it)."""
        started = time.perf_counter()
        for item in self._parked:
            heapq.heappush(self._due, item)
        self._parked = []
        while self._due and self._due[0][0] <= now:
            when, dag_id = heapq.heappop(self._due)
            state = self._states.get(dag_id)
            if state is None or state.next_fire != when:
                continue  # a stale entry
            if not self._schedule_dag(dag_id, state, now):
                self._parked.append((when, dag_id))
            elif state.next_fire is not None:
                heapq.heappush(self._due, (state.next_fire, dag_id))
        self.metrics.histogram("scheduler.tick_duration_ms", (time.perf_counter() - started) * 1000)
        return self._due[0][0] if self._due else None

    def _schedule_dag(self, dag_id: str, state: _DagState, now: datetime) -> bool:
        """Create this DAG's due runs; False when it must wait (paused or no capacity)."""
        dag = self.dags[dag_id]
        if self._is_paused(dag_id):
            return False
        capacity = dag.max_active_runs - self._active_runs(dag_id)
        if capacity <= 0:
            return False
        after = state.last or _before(state.schedule, now)
        if dag.catchup:
            fires = []
            for fire in state.schedule.fires_between(after, now):
                fires.append(fire)
                if len(fires) >= capacity:
                    break
        else:
            latest = state.schedule.latest_at_or_before(now, after)
            fires = [latest] if latest is not None else []
        for fire in fires:
            self._create(dag_id, fire)
            state.last = fire
        state.next_fire = state.schedule.next_after(
            state.last if dag.catchup and state.last else max(now, after)
        )
        if dag.catchup and state.last is not None:
            state.next_fire = state.schedule.next_after(state.last)
        return True

    def _create(self, dag_id: str, fire: datetime) -> None:
        try:
            self.runner.trigger(
                TriggerRequest(
                    dag_id,
                    run_id=f"scheduled__{iso(fire)}",
                    logical_date=fire,
                    run_type=RunType.SCHEDULED,
                )
            )
            self.metrics.counter("scheduler.runs_created", dag_id=dag_id)
            logger.info("created scheduled run of %s for %s", dag_id, iso(fire))
        except Conflict:
            logger.debug("run of %s for %s exists already", dag_id, iso(fire))

    def _is_paused(self, dag_id: str) -> bool:
        try:
            return self.store.dags.get_dag(dag_id).is_paused
        except NotFound:
            return self.dags[dag_id].is_paused

    def _active_runs(self, dag_id: str) -> int:
        query = RunQuery(dag_id=dag_id, states=(RunState.QUEUED, RunState.RUNNING), limit=0)
        return self.store.runs.query_runs(query).total

    # --- the loop --------------------------------------------------------------------------
    def start(self) -> Scheduler:
        # Other processes' events too: a backfill created through an API-only server.
        self.store.feed.subscribe(self._on_events, other_processes=True)
        self.refresh_dags(budget=FIRST_STEP)  # a large folder goes on loading in the loop
        if self.watch is not None and self.settings.watch:
            self.watch.start()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.watch is not None:
            self.watch.stop()
        self.store.feed.unsubscribe(self._on_events)

    def wake(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify_all()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            finished = event.type == "run.state_changed" and event.payload.get("new_state") in (
                "success",
                "failed",
                "cancelled",
            )
            if (
                finished
                or event.type in ("backfill.updated", "asset.updated")
                or (event.type == "dag.updated" and event.payload.get("change") == "unpaused")
            ):
                self.wake()
                return

    def _loop(self) -> None:
        next_heartbeat = next_rescan = time.monotonic()
        while True:
            now_mono = time.monotonic()
            if now_mono >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now_mono + self.settings.heartbeat_interval
            loading = self.sync is not None and self.sync.loading
            if loading:
                _guard(lambda: self.refresh_dags(budget=LOAD_STEP))
            elif now_mono >= next_rescan:
                _guard(self.refresh_dags)
                next_rescan = now_mono + self.settings.rescan_interval
            elif self.watch is not None and (changed := self.watch.take()):
                _guard(lambda: self.refresh_dags(changed))
            next_due = None
            try:
                next_due = self.tick(self.clock())
            except Exception:
                logger.exception("scheduler tick failed")
            _guard(self.backfills.step)
            _guard(lambda: self.assets.step(self.dags))
            wait = 0.0 if loading else min(next_heartbeat, next_rescan) - time.monotonic()
            if next_due is not None:
                wait = min(wait, (next_due - self.clock()).total_seconds())
            with self._wake:
                if not self._stopping and not self._woken:
                    self._wake.wait(max(0.0, wait))
                self._woken = False
                if self._stopping:
                    return

    def _heartbeat(self) -> None:
        try:
            beat = self.store.heartbeats.heartbeat(
                self.component_id, kind="scheduler", hostname=socket.gethostname(), pid=os.getpid()
            )
            self.last_heartbeat = beat.last_heartbeat
            self.metrics.counter("scheduler.heartbeat")
        except Exception:
            logger.exception("scheduler heartbeat failed")


def _guard(fn: Callable[[], None]) -> None:
    """Run a housekeeping step; its failure is logged, and the loop goes on."""
    try:
        fn()
    except Exception:
        logger.exception("scheduler housekeeping failed")


def _before(schedule: Schedule, now: datetime) -> datetime:
    """Where a DAG with no scheduled run yet starts: just before its ``start_date``, or
    ``now`` without one."""
    start = schedule.start_date
    return (start - _EPSILON) if start is not None else now
