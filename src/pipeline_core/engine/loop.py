"""``EngineLoop``: the thread that owns the engine's core, and how a wake-up goes.

It sleeps on an inbox — commands, executor completions, events from the log — or until its
next timer, never on a polling tick. Each wake-up reads the clock once, hands every message
to the core, and gives the effects to the runner: the store writes of the whole wake-up in
one transaction, then tries to the executor. A command is one commit of its own, answered
once committed.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from pipeline_core.clock import Clock
from pipeline_core.engine import recovery
from pipeline_core.engine.core.decide import Decider, Outcome
from pipeline_core.engine.core.jobs import Executor
from pipeline_core.engine.core.messages import (
    STORE_EFFECTS,
    Forget,
    Message,
    Moment,
    ResolveMapping,
    Resync,
    Trigger,
)
from pipeline_core.engine.expansions import Expansions
from pipeline_core.engine.runner import EffectRunner, Timers, run_key_of
from pipeline_core.engine.settings import EngineSettings
from pipeline_core.errors import NotFound, PipelineError, StoreUnavailable
from pipeline_core.events import ACTOR, acting
from pipeline_core.metrics import Metrics
from pipeline_core.model import CreateRun
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine")
Item = Message | Callable[[], Any] | None
#: The longest wait between attempts to commit while the store is unavailable.
MAX_RETRY_DELAY = 5.0


class EngineLoop:
    """The engine's thread and what it owns: the core, the timers, the effect runner and
    the writes a wake-up has decided. ``Engine`` drives it; only this thread touches them."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        settings: EngineSettings,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.executor = executor
        self.core = Decider()
        self._inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self.timers = Timers()
        self.expansions = Expansions(store, settings.max_map_length)
        self._runner = EffectRunner(store, executor, self.timers, self._resync, self.expansions)
        self._pending: list[Any] = []
        self._now = Moment(clock.now(), clock.monotonic())
        self._retry_delay = 0.0
        self._thread = threading.Thread(target=self._loop, name="orchestrator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout=timeout)

    def put(self, item: Item) -> None:
        """Queue a message, a call for the engine's thread, or ``None`` (stop) for it."""
        self._inbox.put(item)

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` on the engine's thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn()
        return self.submit(fn).result(timeout or self.settings.command_timeout)

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Queue ``fn`` for the engine's thread; its future holds the result. A command a
        person gave (``ACTOR`` set) has its writes flushed apart from the others', so that
        its events alone carry the actor."""
        future: Future[Any] = Future()
        actor = ACTOR.get()

        def act() -> Any:
            self.flush()
            with acting(actor):
                result = fn()
                self.flush()
            return result

        def run() -> None:
            try:
                future.set_result(act() if actor is not None else fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._inbox.put(run)
        return future

    def _loop(self) -> None:
        while True:
            due = self.timers.next_due()
            delay = None if due is None else max(0.0, due - self.clock.monotonic())
            try:
                batch: list[Item] = [self._inbox.get(timeout=delay)]
            except queue.Empty:
                batch = []
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._inbox.get_nowait())
            self._now = Moment(self.clock.now(), self.clock.monotonic())
            for item in batch:
                if item is None:
                    self.flush()
                    return
                self._guard(item)
            for timed in self.timers.pop_due(self._now.monotonic):
                self._guard(timed)
            self.flush()

    def _guard(self, item: Message | Callable[[], Any]) -> None:
        try:
            if callable(item):
                item()
            else:
                self.decide(item)
        except Exception:
            logger.exception("engine step failed")

    def decide(self, message: Message) -> Outcome:
        """Decide now; the effects wait for the wake-up's commit."""
        outcome = self._handle(message)
        self._pending.extend(outcome.effects)
        return outcome

    def _handle(self, message: Message) -> Outcome:
        """The core's outcome, with the values of the mapped tasks it made ready read and
        decided on at once: their instances are written by the same commit."""
        outcome = self.core.handle(message, self._now)
        effects = list(outcome.effects)
        while requests := [e for e in effects if isinstance(e, ResolveMapping)]:
            effects = [e for e in effects if not isinstance(e, ResolveMapping)]
            for request in requests:
                effects += self.core.handle(self.expansions.resolve(request), self._now).effects
        return Outcome(tuple(effects), outcome.reply)

    def command(self, message: Message) -> Any:
        """Decide and commit at once, then answer. A refusal raises before anything
        changes; so does a store that still holds back earlier writes; a commit that fails
        raises too, after the core has been set back to what the store holds (a trigger's
        run is forgotten)."""
        self.flush()
        if self._pending:
            raise StoreUnavailable("the store cannot commit just now; try again shortly")
        self._now = Moment(self.clock.now(), self.clock.monotonic())
        outcome = self._handle(message)
        try:
            self._act(outcome.effects, strict=isinstance(message, Trigger))
        except PipelineError:
            if isinstance(message, Trigger):
                run = message.create.run
                self._act(self.core.handle(Forget(run.dag_id, run.run_id), self._now).effects)
            else:
                self._set_back(outcome.effects)
            raise
        return outcome.reply

    def trigger_all(self, creates: list[Any]) -> list[Any]:
        """Several triggers in one commit: each one's run, or the error that refused it
        (refused before anything changed). A commit that fails forgets every run and
        raises: the caller may try them one by one."""
        self.flush()
        if self._pending:
            raise StoreUnavailable("the store cannot commit just now; try again shortly")
        self._now = Moment(self.clock.now(), self.clock.monotonic())
        answers: list[Any] = []
        effects: list[Any] = []
        for create in creates:
            try:
                outcome = self._handle(Trigger(create))
            except PipelineError as exc:
                answers.append(exc)
                continue
            effects.extend(outcome.effects)
            answers.append(outcome.reply)
        try:
            self._act(effects, strict=True)
        except PipelineError:
            for create in creates:
                run = create.run
                self._act(self.core.handle(Forget(run.dag_id, run.run_id), self._now).effects)
            raise
        return answers

    def flush(self) -> None:
        """Commit and act on what this wake-up decided. While the store is unavailable the
        writes wait, in order, with their tries (none goes out before its commit), and a
        timer brings the next attempt."""
        effects, self._pending = self._pending, []
        if not effects:
            return
        try:
            self._act(effects)
            self._retry_delay = 0.0
        except StoreUnavailable as exc:
            self._pending = effects
            self._retry_delay = min(max(self._retry_delay * 2, 0.1), MAX_RETRY_DELAY)
            logger.warning(
                "%s; %d writes wait, next attempt in %.1fs", exc, len(effects), self._retry_delay
            )
            self.timers.at(self.clock.monotonic() + self._retry_delay, lambda: None)
        except PipelineError:
            logger.exception("could not commit the engine's writes; re-reading their runs")
            self._set_back(effects)

    def _act(self, effects: Sequence[Any], *, strict: bool = False) -> None:
        submitted = self._runner.apply(effects, self._now.wall, strict=strict)
        if submitted or any(isinstance(e, CreateRun) for e in effects):
            self._report_pools()  # slots moved, or a run may wait for its key

    def _set_back(self, effects: Sequence[Any]) -> None:
        """After a lost commit: what the core holds of each run it wrote is read again
        (the next wake-up commits what follows)."""
        for run_key in {run_key_of(e) for e in effects if isinstance(e, STORE_EFFECTS)}:
            with contextlib.suppress(PipelineError):
                self._resync(run_key)

    def _report_pools(self) -> None:
        for pool, slots, used, queued in self.core.slots.usage():
            self.metrics.gauge("pool.slots_used", used, pool=pool)
            self.metrics.gauge("pool.slots_available", max(0, slots - used), pool=pool)
            self.metrics.gauge("pool.queued", queued, pool=pool)
        held, keys = self.core.slots, self.core.book.keys
        self.metrics.gauge("flow.keys_in_use", len(held.key_running) + len(keys.started))
        self.metrics.gauge("flow.rate_limited", held.rate_limited)
        for dag_id, count in self.core.state.queued_by_key.items():
            self.metrics.gauge("run.queued_by_key", count, dag_id=dag_id)

    def _resync(self, run_key: tuple[str, str]) -> None:
        with contextlib.suppress(NotFound):
            self.decide(Resync(recovery.snapshot(self.store, *run_key)))
