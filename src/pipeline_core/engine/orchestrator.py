"""The orchestrator: one thread that owns every run and task instance of its process.

It sleeps on an inbox of commands (trigger, cancel, retry, ...), executor completions and
timer wake-ups — never on a polling tick. Each wake-up drains the inbox, decides what follows
(readiness is incremental: see ``tracker``), and commits all resulting task transitions in
one store transaction before handing new tries to the executor.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline_core.dag.model import DAG
from pipeline_core.engine import ownership
from pipeline_core.engine.jobs import Completion, Executor, Job
from pipeline_core.engine.pools import PoolSlots, missing_pools
from pipeline_core.engine.remote import COMPLETED, REQUESTED
from pipeline_core.engine.runs import RunBook, RunKey
from pipeline_core.engine.settings import EngineSettings, local_executor
from pipeline_core.errors import Conflict, PipelineError
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.base import Store
from pipeline_core.store.tail import EventTail
from pipeline_core.store.types import (
    DEFAULT_POOL_SLOTS,
    DagRecord,
    DagRun,
    Event,
    Pool,
    TaskKey,
    utcnow,
)

logger = logging.getLogger("pipeline_core.engine")


@dataclass
class _Active:
    """A try the executor holds (or a sensor between pokes, ``sleeping``)."""

    run_key: RunKey
    task_id: str
    try_number: int
    pool: str
    first_started: float
    sleeping: bool = False


class Engine:
    """Runs DAG runs: the ``Control`` implementation for one process."""

    def __init__(
        self,
        store: Store,
        dags: Mapping[str, DAG] | None = None,
        *,
        executor: Executor | None = None,
        metrics: Metrics | None = None,
        settings: EngineSettings | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or EngineSettings()
        self.metrics: Metrics = metrics or NullMetrics()
        self.executor: Executor = executor or local_executor(store, self.settings, self.metrics)
        self.component_id = f"engine-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.book = RunBook(store, self.metrics)
        self.book.dags = dict(dags or {})
        self._inbox: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_order = itertools.count()
        self._pools: PoolSlots[TaskKey] = PoolSlots()
        self._queued_entries: dict[TaskKey, Any] = {}
        self._active: dict[TaskKey, _Active] = {}
        self._dag_running: Counter[str] = Counter()
        self._draining = False
        self._thread = threading.Thread(target=self._loop, name="orchestrator", daemon=True)
        self._stopped = threading.Event()
        self._tail: EventTail | None = None
        #: DAGs with runs whose running tries another engine's lease still covers.
        self._contested: set[str] = set()

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> Engine:
        """Start the executor (``ConfigurationError`` if it cannot run tasks; nothing else is
        started then), take over what a previous engine left, and begin."""
        self.executor.start(lambda c: self._inbox.put(lambda: self._complete(c)))
        ownership.hold(self.component_id)
        self.store.add_listener(self._on_store_events)
        self._thread.start()
        self.call(self._startup)
        if self.settings.watch_other_processes:
            self._tail = EventTail(self.store, self._on_logged_events).start()
        return self

    def stop(self, grace: float = 30.0) -> None:
        """Stop starting tasks, wait up to ``grace`` for running ones, then stop the rest
        (they become ``up_for_retry``, or ``failed`` when out of tries, and resume on the next
        start)."""
        if not self._thread.is_alive():
            return
        if self._tail is not None:
            self._tail.stop()
        self._inbox.put(self._begin_drain)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.call(lambda: bool(self._active)):
            time.sleep(0.02)
        self.call(self._abandon_active)
        self._inbox.put(None)
        self._thread.join(timeout=10)
        self.store.remove_listener(self._on_store_events)
        self.executor.shutdown(wait=False)
        ownership.let_go(self.component_id)
        with contextlib.suppress(Exception):  # a store that is gone cannot be told
            self.store.release_heartbeat(self.component_id)
        self._stopped.set()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` on the orchestrator thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn()
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._inbox.put(run)
        return future.result(timeout or self.settings.command_timeout)

    # --- Control ------------------------------------------------------------------------
    def set_dags(self, dags: Mapping[str, DAG]) -> None:
        """Replace the DAG definitions the engine runs (new runs use the new definitions)."""
        self.call(lambda: self._set_dags(dict(dags)))

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        logical_date: datetime | None = None,
        note: str | None = None,
        run_type: str = "manual",
    ) -> DagRun:
        run: DagRun = self.call(
            lambda: self._trigger(dag_id, dict(conf or {}), run_id, logical_date, note, run_type)
        )
        return run

    def cancel(self, dag_id: str, run_id: str) -> DagRun:
        run: DagRun = self.call(lambda: self._cancel((dag_id, run_id)))
        return run

    def retry(
        self,
        dag_id: str,
        run_id: str,
        task_ids: Sequence[str] | None = None,
        include_downstream: bool = True,
    ) -> tuple[DagRun, list[str]]:
        result: tuple[DagRun, list[str]] = self.call(
            lambda: self._retry((dag_id, run_id), task_ids, include_downstream)
        )
        return result

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        record: DagRecord = self.call(lambda: self._set_paused(dag_id, paused))
        return record

    # --- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            delay = self._timers[0][0] - time.monotonic() if self._timers else None
            try:
                item = self._inbox.get(timeout=max(0.0, delay) if delay is not None else None)
            except queue.Empty:
                item = None if delay is None else _NOTHING
            batch = [item]
            while True:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            if any(command is None for command in batch):
                return
            for command in batch:
                if command is not _NOTHING:
                    self._guard(command)  # type: ignore[arg-type]
            self._run_due_timers()
            self._settle()

    def _guard(self, command: Callable[[], Any]) -> None:
        try:
            command()
        except Exception:
            logger.exception("orchestrator command failed")

    def _settle(self) -> None:
        """Dispatch, commit and finish runs until nothing more follows from this wake-up."""
        for _ in range(1000):
            self._dispatch()
            committed = self._guarded_flush()
            finished = self.book.finish_runs()
            for dag_id in finished:
                self._start_waiting_runs(dag_id)
            if not committed and not finished and not self.book.pending:
                return

    def _guarded_flush(self) -> bool:
        try:
            return self.book.flush()
        except Exception:
            logger.exception("could not commit task transitions")
            return False

    def _at(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_order), fn))

    def _run_due_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            self._guard(fn)

    # --- startup, heartbeat, recovery ------------------------------------------------------
    def _startup(self) -> None:
        self._create_missing_pools()
        self._reload_pools()
        self._heartbeat()
        self._recover(set(self.book.dags))

    def _heartbeat(self) -> None:
        try:
            self.store.heartbeat(
                self.component_id, kind="engine", hostname=socket.gethostname(), pid=os.getpid()
            )
            self.metrics.counter("engine.heartbeat")
        except Exception:
            logger.exception("heartbeat failed")
        self._at(self.settings.heartbeat_interval, self._heartbeat)
        if self._contested and not self._draining:
            self._recover(self._contested & set(self.book.dags))

    def _recover(self, dag_ids: set[str]) -> None:
        """Resume runs left by an earlier engine; its running tries are orphaned (retried if
        they have tries left). Runs of another engine whose lease holds are left to it and
        looked at again on every heartbeat, so none is skipped for good."""
        holders = ownership.lease_holders(
            self.store.list_heartbeats("engine"),
            me=self.component_id,
            hostname=socket.gethostname(),
            now=utcnow(),
            expire_after=self.settings.orphan_after,
        )
        contested: set[str] = set()
        for run, tis in self.book.load_unfinished_runs(dag_ids):
            run_key = (run.dag_id, run.run_id)
            if self.book.knows(run_key):
                continue
            running = [ti for ti in tis if ti.state is TaskState.RUNNING]
            if running and holders:
                if run.dag_id not in self._contested:
                    owners = ", ".join(b.component_id for b in holders)
                    logger.info("run %s has tasks running under %s; waiting", run_key, owners)
                contested.add(run.dag_id)
                continue
            for ti in running:
                self.book.orphan(ti, "orphaned")
            self.book.flush()
            if run.state is RunState.QUEUED:
                self.book.enqueue_run(run)
                continue
            states = {ti.task_id: ti.state for ti in self.book.task_instances(run_key)}
            for task_id, decision in self.book.track(run, states):
                self._decided(run_key, task_id, decision)
            for ti in self.book.up_for_retry(run_key):
                self._schedule_requeue(run_key, ti.task_id, ti.try_number)
        self._contested = (self._contested - dag_ids) | contested
        for dag_id in dag_ids:
            self._start_waiting_runs(dag_id)

    def _on_logged_events(self, events: list[Event]) -> None:
        """Events from the log, other processes' included: runs created elsewhere, control
        requests, pause changes."""
        for event in events:
            if event.type == REQUESTED:
                self._inbox.put(functools.partial(self._answer, dict(event.payload)))
            elif event.type == "run.state_changed" and event.payload.get("previous_state") is None:
                self._inbox.put(
                    functools.partial(self._adopt_run, event.dag_id or "", event.run_id or "")
                )
            elif event.type == "dag.updated" and event.payload.get("change") == "unpaused":
                self._inbox.put(functools.partial(self._start_waiting_runs, event.dag_id or ""))

    def _adopt_run(self, dag_id: str, run_id: str) -> None:
        if dag_id not in self.book.dags or self.book.knows((dag_id, run_id)):
            return
        run = self.store.get_run(dag_id, run_id)
        if run.state is RunState.QUEUED:
            self.book.enqueue_run(run)
            self._start_waiting_runs(dag_id)

    def _answer(self, request: dict[str, Any]) -> None:
        answer: dict[str, Any] = {"request_id": request.get("request_id")}
        try:
            run_key = (request["dag_id"], request["run_id"])
            if request.get("action") == "cancel":
                self._cancel(run_key)
            elif request.get("action") == "retry":
                _, answer["requeued"] = self._retry(
                    run_key, request.get("task_ids"), request.get("include_downstream", True)
                )
            else:
                raise Conflict(f"unknown action {request.get('action')!r}")
        except PipelineError as exc:
            answer["error"] = {"code": exc.code, "message": exc.message}
        self.store.append_event(
            COMPLETED, answer, dag_id=request.get("dag_id"), run_id=request.get("run_id")
        )

    def _on_store_events(self, events: list[Event]) -> None:
        if any(e.type == "pool.updated" for e in events):
            self._inbox.put(self._reload_pools)

    def _reload_pools(self) -> None:
        known = {pool.name: pool.slots for pool in self.store.list_pools()}
        for name in list(self._pools.slots):
            if name not in known:
                self._pools.remove_pool(name)
        for name, slots in known.items():
            self._pools.set_slots(name, slots)
        self._fail_unknown_pools()

    def _fail_unknown_pools(self) -> None:
        for pool, key in self._pools.waiting_in_unknown_pools():
            self._queued_entries.pop(key, None)
            for ready in self.book.fail_waiting(key, f"pool '{pool}' does not exist"):
                self._queue_for_slot(ready)

    # --- commands ---------------------------------------------------------------------------
    def _create_missing_pools(self) -> None:
        """Pools that DAG tasks name are created (with the default size) when a DAG arrives,
        so a DAG never waits on a pool nobody made; resize them through the API."""
        existing = [pool.name for pool in self.store.list_pools()]
        for name, dag_id in missing_pools(existing, self.book.dags.values()).items():
            with contextlib.suppress(Conflict):  # another process may have made it meanwhile
                self.store.create_pool(
                    Pool(name, DEFAULT_POOL_SLOTS, f"created for DAG '{dag_id}'")
                )

    def _set_dags(self, dags: dict[str, DAG]) -> None:
        new = set(dags) - set(self.book.dags)
        changed = [
            d for d in dags.values() if d.dag_id in self.book.dags and d != self.book.dags[d.dag_id]
        ]
        self.book.dags = dags
        self._create_missing_pools()
        for dag in changed:
            for key in self.book.remove_dropped_tasks(dag):
                self._queue_for_slot(key)
        if new:
            self._recover(new)

    def _trigger(
        self,
        dag_id: str,
        conf: dict[str, Any],
        run_id: str | None,
        logical_date: datetime | None,
        note: str | None,
        run_type: str,
    ) -> DagRun:
        run = self.book.create_run(dag_id, conf, run_id, logical_date, note, run_type)
        self._start_waiting_runs(dag_id)
        self._settle()
        return self.book.run(run.dag_id, run.run_id)

    def _set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        record = self.store.set_paused(dag_id, paused)
        if not paused:
            self._start_waiting_runs(dag_id)
        return record

    def _start_waiting_runs(self, dag_id: str) -> None:
        if self._draining:
            return
        for run_key, decisions in self.book.start_waiting_runs(dag_id):
            for task_id, decision in decisions:
                self._decided(run_key, task_id, decision)

    def _cancel(self, run_key: RunKey) -> DagRun:
        run = self.book.run(*run_key)
        if run.state not in (RunState.QUEUED, RunState.RUNNING):
            raise Conflict(
                f"run '{run.run_id}' already finished ({run.state.value}); nothing to cancel"
            )
        for task_id, _state in self.book.open_tasks(run_key):
            key = TaskKey(run_key[0], run_key[1], task_id)
            entry = self._queued_entries.pop(key, None)
            if entry is not None:
                entry.cancelled = True
            active = self._active.pop(key, None)
            if active is not None:
                self._release(active)
                if not active.sleeping:
                    self.executor.cancel(key, active.try_number)
        cancelled = self.book.cancel_run(run_key)
        self._start_waiting_runs(run_key[0])
        return cancelled

    def _retry(
        self, run_key: RunKey, task_ids: Sequence[str] | None, include_downstream: bool
    ) -> tuple[DagRun, list[str]]:
        requeued, decisions = self.book.retry(run_key, task_ids, include_downstream)
        for task_id, decision in decisions:
            self._decided(run_key, task_id, decision)
        self._settle()
        return self.book.run(*run_key), requeued

    # --- tasks --------------------------------------------------------------------------------
    def _decided(self, run_key: RunKey, task_id: str, decision: Any) -> None:
        """Act on a readiness decision: queue for a pool slot, or skip / fail upstream."""
        for ready_key in self.book.apply_decision(run_key, task_id, decision):
            self._queue_for_slot(ready_key)

    def _queue_for_slot(self, key: TaskKey) -> None:
        task = self.book.task(key)
        self._queued_entries[key] = self._pools.push(task.pool, task.priority_weight, key)

    def _dispatch(self) -> None:
        if self._draining:
            return
        started = self._pools.take(self._admit)
        for _pool, key in started:
            self._queued_entries.pop(key, None)
            self._start_try(key)
        self._fail_unknown_pools()
        if started:
            self._report_pools()

    def _report_pools(self) -> None:
        for pool, slots in self._pools.slots.items():
            used = self._pools.running.get(pool, 0)
            self.metrics.gauge("pool.slots_used", used, pool=pool)
            self.metrics.gauge("pool.slots_available", max(0, slots - used), pool=pool)
            self.metrics.gauge("pool.queued", self._pools.queued(pool), pool=pool)

    def _admit(self, key: TaskKey) -> bool:
        dag = self.book.dags.get(key.dag_id)
        limit = dag.concurrency if dag is not None else 1
        if self._dag_running[key.dag_id] >= limit:
            return False
        self._dag_running[key.dag_id] += 1
        return True

    def _start_try(self, key: TaskKey) -> None:
        run_key = (key.dag_id, key.run_id)
        active = self._active.get(key)
        task = self.book.task(key)
        if active is not None and active.sleeping:  # a sensor's next poke: same try
            active.sleeping = False
            try_number = active.try_number
        else:
            try_number = self.book.begin_try(key)
            active = self._active[key] = _Active(
                run_key, key.task_id, try_number, task.pool, time.monotonic()
            )
        timeout = task.timeout
        if task.type == "sensor" and timeout is not None:
            timeout = max(0.001, timeout - (time.monotonic() - active.first_started))
        job = Job(
            key, try_number, self.book.dags[key.dag_id], task, self.book.run(*run_key), timeout
        )
        self.book.after_commit(lambda: self.executor.submit(job))

    def _release(self, active: _Active) -> None:
        if not active.sleeping:
            self._pools.release(active.pool)
            self._dag_running[active.run_key[0]] -= 1

    def _complete(self, completion: Completion) -> None:
        key = completion.key
        active = self._active.get(key)
        if active is None or active.try_number != completion.try_number or active.sleeping:
            return  # a late report of a try that was cancelled or timed out already
        self._release(active)
        task = self.book.task(key)
        if task.type == "sensor" and (
            completion.outcome == "timeout"  # a poke cut short by what was left of the budget
            or (completion.outcome == "success" and not completion.result.poke_ok)
        ):
            if completion.outcome == "success" and (
                task.timeout is None or time.monotonic() - active.first_started < task.timeout
            ):
                active.sleeping = True
                interval = float(task.config.get("poke_interval", 30.0))
                self._at(interval, lambda: self._repoke(key, active.try_number))
                return
            completion = Completion(
                key, completion.try_number, "timeout", f"sensor timed out after {task.timeout:g}s"
            )
        del self._active[key]
        elapsed_ms = (time.monotonic() - active.first_started) * 1000
        self.metrics.histogram(
            "task.duration_ms", elapsed_ms, dag_id=key.dag_id, task_id=key.task_id
        )
        ready, retry_after = self.book.finish_try(key, completion)
        for ready_key in ready:
            self._queue_for_slot(ready_key)
        if retry_after is not None:
            self._at(retry_after, lambda: self._requeue(key, completion.try_number))

    def _repoke(self, key: TaskKey, try_number: int) -> None:
        active = self._active.get(key)
        if active is not None and active.sleeping and active.try_number == try_number:
            self._queue_for_slot(key)

    def _schedule_requeue(self, run_key: RunKey, task_id: str, try_number: int) -> None:
        key = TaskKey(run_key[0], run_key[1], task_id)
        self._at(self.book.retry_delay(key, try_number), lambda: self._requeue(key, try_number))

    def _requeue(self, key: TaskKey, try_number: int) -> None:
        for ready_key in self.book.requeue(key, try_number):
            self._queue_for_slot(ready_key)

    # --- shutdown -----------------------------------------------------------------------------
    def _begin_drain(self) -> None:
        self._draining = True

    def _abandon_active(self) -> None:
        for key, active in list(self._active.items()):
            if not active.sleeping:
                self.executor.cancel(key, active.try_number)
            self._release(active)
            self.book.abandon(key, active.try_number, "engine shutdown")
        self._active.clear()
        self.book.flush()


_NOTHING: Any = object()
