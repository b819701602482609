"""``EffectRunner``: applies what the core decided. The store writes of a wake-up go in one
transaction; only once it has committed are tries handed to the executor, kills sent and
timers set — so no task starts that the store does not show as running."""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from pipeline_core.engine.core.jobs import Executor
from pipeline_core.engine.core.messages import (
    STORE_EFFECTS,
    DeadlineDue,
    Effect,
    KillTry,
    StartTimer,
    SubmitTry,
    TimerFired,
    TokensDue,
)
from pipeline_core.engine.expansions import Expansions
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import (
    CreateRun,
    ExpandTask,
    MissDeadline,
    MoveRun,
    NoteWait,
    SwitchVersion,
    TaskChange,
    UpdateAssets,
    Write,
)
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine")
RunKey = tuple[str, str]
Timed = TimerFired | DeadlineDue | TokensDue | Callable[[], None]


class Timers:
    """The timer heap: what is due when, on the monotonic clock."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timed]] = []
        self._order = itertools.count()

    def at(self, due: float, what: Timed) -> None:
        heapq.heappush(self._heap, (due, next(self._order), what))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Timed]:
        due: list[Timed] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due


class EffectRunner:
    def __init__(
        self,
        store: Store,
        executor: Executor,
        timers: Timers,
        resync: Callable[[RunKey], None],
        expansions: Expansions,
    ) -> None:
        """``resync(run_key)`` is called for every run that lost a write to another writer;
        ``expansions`` gives the tries of mapped instances their values."""
        self.store = store
        self.executor = executor
        self.timers = timers
        self.resync = resync
        self.expansions = expansions

    def apply(self, effects: Sequence[Effect], now: datetime, *, strict: bool = False) -> bool:
        """Commit the writes, then act; returns whether tries were handed out. With
        ``strict`` any failed commit raises and nothing acts (a trigger: its run must not
        half exist). Otherwise a conflict with another writer is settled write by write
        (each run that lost one is resynchronised), and a store that cannot commit raises
        ``StoreUnavailable`` with nothing acted on."""
        writes: list[Write] = [e for e in effects if isinstance(e, STORE_EFFECTS)]
        try:
            self.store.runs.apply(writes, now=now)
        except Conflict:
            if strict:
                raise
            self._apply_one_by_one(writes, now)
        submitted = False
        for write in writes:
            if isinstance(write, MoveRun) and write.new in FINISHED_RUN_STATES:
                self.expansions.forget((write.dag_id, write.run_id))
        for effect in effects:
            if isinstance(effect, SubmitTry):
                self.executor.submit(self.expansions.with_values(effect.job))
                submitted = True
            elif isinstance(effect, KillTry):
                self.executor.cancel(effect.key, effect.try_number)
            elif isinstance(effect, StartTimer):
                self.timers.at(effect.due, effect.fire)
        return submitted

    def _apply_one_by_one(self, writes: list[Write], now: datetime) -> None:
        lost: set[RunKey] = set()
        for write in writes:
            try:
                self.store.runs.apply([write], now=now)
            except (Conflict, NotFound) as exc:
                logger.error("lost an engine write (%s); resynchronising its run", exc)
                lost.add(run_key_of(write))
        for run_key in lost:
            self.resync(run_key)


def run_key_of(write: Write) -> RunKey:
    """The run a write belongs to."""
    if isinstance(write, TaskChange | ExpandTask | UpdateAssets):
        return (write.key.dag_id, write.key.run_id)
    if isinstance(write, MoveRun | MissDeadline | SwitchVersion):
        return (write.dag_id, write.run_id)
    if isinstance(write, NoteWait):
        return (write.dag_id or "", write.run_id or "")
    assert isinstance(write, CreateRun)
    return write.run.key
