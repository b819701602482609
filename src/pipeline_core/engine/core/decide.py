"""The engine's decisions: one message and the current moment in, effects out. Pure.

``Decider.handle`` is the whole of what the engine decides — which runs start, which tasks
are ready, skipped or upstream-failed, which tries start under the pool and concurrency
limits, what a try's end means (success, retry after a delay, failure, a sensor's next poke),
cancel, retry, pause, pool changes and recovery. It reads no store, runs no task, calls no
clock and records no metric: tests drive it with explicit moments, and the engine's loop
applies what it returns.

A message that is refused (``NotFound``, ``Conflict``) raises before anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.flow import KeyError_
from pipeline_core.engine.core.book import Book
from pipeline_core.engine.core.deciding import CoreState
from pipeline_core.engine.core.mapped import MapDecisions
from pipeline_core.engine.core.marks import MarkCommands
from pipeline_core.engine.core.messages import (
    Abandon,
    Cancel,
    DagsChanged,
    DeadlineDue,
    Drain,
    Effect,
    Forget,
    MarkRun,
    MarkTask,
    Message,
    Moment,
    Pause,
    PoolChanged,
    Resolved,
    Resume,
    Resync,
    Retry,
    StartTimer,
    TimerFired,
    TimerKind,
    TokensDue,
    Trigger,
    TryCompleted,
)
from pipeline_core.engine.core.runs import RunCommands
from pipeline_core.engine.core.slots import Slots
from pipeline_core.engine.core.tries import TryDecisions
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.model import CreateRun, DagRun, NoteWait
from pipeline_core.state import derive_run_state


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one message decided: the effects, in order (store writes first), and the answer
    for whoever sent it."""

    effects: tuple[Effect, ...] = ()
    reply: Any = None


class Decider:
    """The engine's core: ``handle(message, now)`` → ``Outcome``. It owns the state and the
    parts that decide on runs, marks and tries, each over that one state."""

    def __init__(self) -> None:
        self.state = CoreState()
        self.runs = RunCommands(self.state)
        self.marks = MarkCommands(self.state)
        self.tries = TryDecisions(self.state)
        self.maps = MapDecisions(self.state)
        self._token_timer: float | None = None

    @property
    def book(self) -> Book:
        return self.state.book

    @property
    def slots(self) -> Slots:
        return self.state.slots

    @property
    def draining(self) -> bool:
        return self.state.draining

    def handle(self, message: Message, now: Moment) -> Outcome:
        state = self.state
        state.now, state.actions, state.moved = now, [], {}
        reply = self._handle(message)
        self._settle()
        writes = self.book.take_writes()
        return Outcome((*writes, *state.actions), self._latest(reply))

    def _latest(self, reply: Any) -> Any:
        """A run in a reply as it is after settling (it may have started, or even ended)."""
        if isinstance(reply, DagRun):
            return self.state.moved.get(reply.key, reply)
        if isinstance(reply, tuple) and reply and isinstance(reply[0], DagRun):
            return (self._latest(reply[0]), *reply[1:])
        return reply

    def _handle(self, message: Message) -> Any:
        match message:
            case Trigger(create):
                return self._trigger(create.run, create)
            case Cancel():
                return self.runs.cancel(message)
            case Retry(map_index=int(map_index)):
                return self.maps.retry_instance(message, map_index)
            case Retry():
                return self.runs.retry(message)
            case MarkRun():
                return self.marks.mark_run(message)
            case MarkTask():
                return self.marks.mark_task(message)
            case TryCompleted(completion):
                return self.tries.complete(completion)
            case TimerFired(TimerKind.RETRY, key, try_number):
                return self.tries.requeue(key, try_number)
            case TimerFired(TimerKind.POKE, key, try_number):
                return self.tries.repoke(key, try_number)
            case Resolved():
                return self.maps.resolved(message)
            case DeadlineDue():
                return self.runs.deadline(message)
            case Pause(dag_id, paused):
                return self._pause(dag_id, paused)
            case PoolChanged(name, slots, rate, burst):
                return self.slots.set_pool(name, slots, rate, burst, self.state.now.monotonic)
            case Resume(snapshot, adopt):
                return self.runs.resume(snapshot, adopt)
            case Resync(snapshot):
                return self.runs.resync(snapshot)
            case Forget(dag_id, run_id):
                return self.runs.forget((dag_id, run_id))
            case DagsChanged(dags, paused):
                return self.runs.set_dags(dict(dags), set(paused))
            case TokensDue():
                return None  # settling takes what the new tokens let start
            case Drain():
                self.state.draining = True
            case Abandon(reason):
                return self.tries.abandon(reason)
        return None

    def _trigger(self, run: DagRun, create: CreateRun) -> DagRun:
        if run.dag_id not in self.book.dags:
            raise NotFound(f"no DAG '{run.dag_id}'")
        if self.book.knows(run.key):  # the store would refuse it too, but only after this
            raise Conflict(f"run '{run.run_id}' of DAG '{run.dag_id}' already exists")
        self._make_room(run)
        self.book.writes.append(create)
        self.book.enqueue(run, (spec.task_id for spec in create.tasks))
        self.state.moved[run.key] = run
        self.state.start_waiting_runs(run.dag_id)
        return run

    def _make_room(self, run: DagRun) -> None:
        """Apply the DAG's concurrency key to a new run: refuse it (``skip_new``), cancel
        the oldest runs of its key (``cancel_running``), or let it wait in the queue."""
        keyed = self.book.dags[run.dag_id].run_concurrency
        if keyed is None:
            return
        try:
            key = keyed.render(run)
        except KeyError_ as exc:
            raise InvalidRequest(str(exc)) from None
        active = self.state.active_with_key(run.dag_id, key)
        if len(active) >= keyed.limit and keyed.on_conflict == "skip_new":
            raise Conflict(
                f"run '{active[0].run_id}' of DAG '{run.dag_id}' holds concurrency key "
                f"'{key}' (limit {keyed.limit}); on_conflict skip_new refuses a new run"
            )
        if keyed.on_conflict == "cancel_running":
            for old in active[: max(0, len(active) - keyed.limit + 1)]:
                why = f"cancelled by run '{run.run_id}' of concurrency key '{key}'"
                self.runs.cancel(Cancel(old.dag_id, old.run_id), reason=why)

    def _pause(self, dag_id: str, paused: bool) -> None:
        if paused:
            self.book.paused.add(dag_id)
        else:
            self.book.paused.discard(dag_id)
            self.state.start_waiting_runs(dag_id)

    def _settle(self) -> None:
        """Start what may start, fail what can never start, finish what is done — until
        nothing more follows."""
        while True:
            now = self.state.now.monotonic
            started = [] if self.draining else self.slots.take(self._concurrency, now)
            for key in started:
                self.tries.start_try(key)
            self._wake_for_tokens(now)
            lost = self.slots.lost_to_unknown_pools()
            for pool, key in lost:
                self.tries.fail_waiting(key, f"pool '{pool}' does not exist")
            refused, self.slots.refused = self.slots.refused, []
            for key, why in refused:
                self.tries.fail_waiting(key, why)
            finished = self._finish_runs()
            if not (started or lost or refused or finished):
                self._tell_waits()
                return

    def _tell_waits(self) -> None:
        """A ``flow.waiting`` event for each limit that began to hold tries back: a task's
        concurrency key or rate limit (their keys are ``<dag_id>/<key>``), or a pool's rate."""
        for reason, key, tries in self.slots.new_waits():
            dag_id, _, name = key.partition("/") if reason != "pool_rate_limit" else ("", "", key)
            detail: dict[str, Any] = {"key": name, "tries": tries}
            due = self.slots.next_token
            if reason != "concurrency_key" and due is not None:
                detail["next_token_in"] = round(max(0.0, due - self.state.now.monotonic), 3)
            self.book.writes.append(NoteWait(dag_id or None, reason, detail))

    def _wake_for_tokens(self, now: float) -> None:
        """A timer for the next token a waiting try needs, unless one is set for then or
        sooner."""
        due = self.slots.next_token
        armed = self._token_timer
        if due is not None and (armed is None or armed <= now or due < armed):
            self._token_timer = due
            self.state.actions.append(StartTimer(due, TokensDue()))

    def _concurrency(self, dag_id: str) -> int:
        dag = self.book.dags.get(dag_id)
        return dag.concurrency if dag is not None else 1

    def _finish_runs(self) -> bool:
        finished = False
        for run_key in list(self.book.dirty):
            self.book.dirty.discard(run_key)
            tracker = self.book.trackers.get(run_key)
            if tracker is None or tracker.unfinished:
                continue
            self.state.move_run(run_key, derive_run_state(tracker.states, tracker.leaves()))
            self.book.forget(run_key)
            self.state.start_waiting_runs(run_key[0])
            finished = True
        return finished
