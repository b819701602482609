"""Which tries hold a slot: the pool queues of ready tasks, the tries the executor holds,
each DAG's concurrency, and a try's own limits — room under its concurrency key and a token
of its rate limit. Pure: part of the engine's core, with explicit moments."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.flow import Bucket
from pipeline_core.engine.core.pools import PoolSlots
from pipeline_core.model import TaskKey


@dataclass(frozen=True, slots=True)
class TryLimits:
    """What a queued try waits for beyond a pool slot: a place under ``key`` (``limit`` tries
    at once), a token of bucket ``bucket`` (``per_second``, holding ``burst``)."""

    key: str | None = None
    limit: int = 0
    bucket: str | None = None
    per_second: float = 0.0
    burst: int = 1


@dataclass
class Active:
    """A try the executor holds (or a sensor between pokes: ``sleeping``, holding no slot)."""

    key: TaskKey
    try_number: int
    pool: str
    #: Monotonic time of the first poke (the budget of a sensor runs from there).
    first_started: float
    sleeping: bool = False


class Slots:
    def __init__(self) -> None:
        self.pools: PoolSlots[TaskKey] = PoolSlots()
        self.active: dict[TaskKey, Active] = {}
        self.dag_running: Counter[str] = Counter()
        self._queued: dict[TaskKey, Any] = {}
        self._limits: dict[TaskKey, TryLimits] = {}
        #: Tries running under each concurrency key, and the key each running try holds.
        self.key_running: Counter[str] = Counter()
        self._held_keys: dict[TaskKey, str] = {}
        self.buckets: dict[str, Bucket] = {}
        #: When the next token frees for a try a rate limit holds back (``None``: none is),
        #: and how many tries the last ``take`` held back for want of a token.
        self.next_token: float | None = None
        self.rate_limited = 0
        #: What held tries back in the last ``take``: (reason, key) → tries, and the waits
        #: told so far (a wait is told once, until it ends).
        self.held_back: Counter[tuple[str, str]] = Counter()
        self.told: set[tuple[str, str]] = set()
        #: Tries whose limits could not be worked out, with why: they fail.
        self.refused: list[tuple[TaskKey, str]] = []

    def queue(
        self,
        key: TaskKey,
        pool: str,
        priority_weight: int,
        limits: TryLimits | None = None,
        run_priority: int = 0,
    ) -> None:
        """Wait for a slot of ``pool``: higher priority first, then round-robin across the
        keys of the tries' limits (their concurrency key, else their rate-limit bucket),
        then FIFO."""
        fairness = ""
        if limits is not None:
            self._limits[key] = limits
            fairness = limits.key or limits.bucket or ""
        self._queued[key] = self.pools.push(pool, priority_weight, key, fairness, run_priority)

    def unqueue(self, key: TaskKey) -> None:
        entry = self._queued.pop(key, None)
        self._limits.pop(key, None)
        if entry is not None:
            self.pools.cancel(entry)

    def take(self, concurrency: Callable[[str], int], now: float = 0.0) -> list[TaskKey]:
        """Queued tasks that may start at ``now`` (monotonic seconds), each holding a pool
        slot, one of its DAG's ``concurrency(dag_id)`` places, a place under its key and a
        token of its bucket. ``next_token`` says when a held-back try may have one."""
        self.next_token = None
        self.rate_limited = 0
        self.held_back.clear()

        def admit(key: TaskKey) -> bool:
            if self.dag_running[key.dag_id] >= concurrency(key.dag_id):
                return False
            limits = self._limits.get(key)
            if limits is not None and not self._admit_limited(key, limits, now):
                return False
            self.dag_running[key.dag_id] += 1
            return True

        started = [key for _pool, key in self.pools.take(admit, now)]
        self.rate_limited += self.pools.rate_limited
        for pool, waiting in self.pools.out_of_tokens.items():
            self.held_back[("pool_rate_limit", pool)] += waiting
        due = self.pools.next_token
        if due is not None:
            self.next_token = due if self.next_token is None else min(self.next_token, due)
        for key in started:
            self._queued.pop(key, None)
            self._limits.pop(key, None)
        return started

    def _admit_limited(self, key: TaskKey, limits: TryLimits, now: float) -> bool:
        if limits.key is not None and self.key_running[limits.key] >= limits.limit:
            self.held_back[("concurrency_key", limits.key)] += 1
            return False
        if limits.bucket is not None:
            bucket = self.buckets.get(limits.bucket)
            if bucket is None:
                bucket = self.buckets[limits.bucket] = Bucket(limits.per_second, limits.burst, now)
            wait = bucket.take(now)
            if wait > 0:
                self.rate_limited += 1
                self.held_back[("rate_limit", limits.bucket)] += 1
                due = now + wait
                self.next_token = due if self.next_token is None else min(self.next_token, due)
                return False
        if limits.key is not None:
            self.key_running[limits.key] += 1
            self._held_keys[key] = limits.key
        return True

    def new_waits(self) -> list[tuple[str, str, int]]:
        """Waits of the last ``take`` not told before: (reason, key, tries). A wait that
        ended is forgotten, so the next one is told again."""
        current = set(self.held_back)
        self.told &= current
        new = [(reason, key, self.held_back[(reason, key)])
               for reason, key in sorted(current - self.told)]  # fmt: skip
        self.told |= current
        return new

    def hold(self, active: Active) -> None:
        """Count a try that is already running (taken over from an engine that died) as
        holding its pool slot and DAG place, even past the pool's size."""
        self.active[active.key] = active
        self.pools.running[active.pool] = self.pools.running.get(active.pool, 0) + 1
        self.dag_running[active.key.dag_id] += 1

    def release(self, active: Active) -> None:
        if not active.sleeping:
            self.pools.release(active.pool)
            self.dag_running[active.key.dag_id] -= 1
            held = self._held_keys.pop(active.key, None)
            if held is not None:
                self.key_running[held] -= 1
                if not self.key_running[held]:
                    del self.key_running[held]

    def drop(self, key: TaskKey) -> Active | None:
        """Stop tracking a task's try and give back what it held."""
        self.unqueue(key)
        active = self.active.pop(key, None)
        if active is not None:
            self.release(active)
        return active

    def set_pool(
        self,
        name: str,
        slots: int | None,
        rate: float | None = None,
        burst: int = 1,
        now: float = 0.0,
    ) -> None:
        if slots is None:
            self.pools.remove_pool(name)
        else:
            self.pools.set_slots(name, slots)
            self.pools.set_rate(name, rate, burst, now)

    def lost_to_unknown_pools(self) -> list[tuple[str, TaskKey]]:
        """Queued tasks whose pool no longer exists (taken out of the queues)."""
        lost = self.pools.waiting_in_unknown_pools()
        for _pool, key in lost:
            self._queued.pop(key, None)
        return lost

    def usage(self) -> list[tuple[str, int, int, int]]:
        """(pool, slots, used, queued) of every pool."""
        return [
            (pool, slots, self.pools.running.get(pool, 0), self.pools.queued(pool))
            for pool, slots in self.pools.slots.items()
        ]
