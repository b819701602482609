"""Pool slots and the per-pool priority queues of tasks waiting for one. Pure, no I/O."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pipeline_core.dag.flow import Bucket
from pipeline_core.dag.model import DAG

T = TypeVar("T")


@dataclass(order=True)
class _Entry(Generic[T]):
    sort_key: tuple[int, int, int, int]
    item: T = field(compare=False)
    pool: str = field(default="", compare=False)
    cancelled: bool = field(default=False, compare=False)


def missing_pools(pools: Iterable[str], dags: Iterable[DAG]) -> dict[str, str]:
    """Pools the DAGs' tasks name that do not exist yet, each with the first DAG naming it."""
    known, missing = set(pools), {}
    for dag in dags:
        for task in dag.tasks:
            if task.pool not in known and task.pool not in missing:
                missing[task.pool] = dag.dag_id
    return missing


class PoolSlots(Generic[T]):
    """Named slot counts plus one queue per pool: the higher run priority first, then the
    higher ``priority_weight``, then round-robin across fairness keys, then FIFO.

    Fairness is start-time fair queuing: each key's next item gets the key's next round,
    never earlier than the round being served now, so a key with 1,000 items waiting and one
    with 10 take turns, and a key that shows up late joins the current round rather than
    jumping ahead of it. Items without a key all share one.

    ``take(allowed)`` hands out waiting items while their pool has open slots and
    ``allowed(item)`` agrees (e.g. the DAG's own concurrency limit); an item refused by
    ``allowed`` keeps its place. Slots are returned with ``release``.
    """

    def __init__(self) -> None:
        self.slots: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self._queues: dict[str, list[_Entry[T]]] = {}
        #: Entries of each queue that are not cancelled (queues keep cancelled ones until
        #: they come up).
        self._live: dict[str, int] = {}
        self._order = itertools.count()
        #: The next round of each fairness key, and the round being served in each pool.
        self._rounds: dict[tuple[str, str], int] = {}
        self._serving: dict[str, int] = {}
        #: Each rate-limited pool's token bucket; after ``take``, when the next token of a
        #: pool with tries waiting frees, and how many tries waited for one.
        self.rates: dict[str, Bucket] = {}
        self.next_token: float | None = None
        self.rate_limited = 0
        self.out_of_tokens: dict[str, int] = {}

    def set_slots(self, pool: str, slots: int) -> None:
        self.slots[pool] = slots

    def remove_pool(self, pool: str) -> None:
        self.slots.pop(pool, None)
        self.rates.pop(pool, None)

    def set_rate(self, pool: str, per_second: float | None, burst: int, now: float) -> None:
        """Start at most ``per_second`` items of ``pool`` a second (``burst`` at once); a
        bucket kept across a resize keeps its tokens."""
        current = self.rates.get(pool)
        if per_second is None:
            self.rates.pop(pool, None)
        elif current is None or (current.per_second, current.burst) != (per_second, burst):
            self.rates[pool] = Bucket(per_second, burst, now)

    def push(
        self, pool: str, priority_weight: int, item: T, fairness: str = "", run_priority: int = 0
    ) -> _Entry[T]:
        """Queue ``item``: its run's priority first, then its own ``priority_weight``, then
        its key's turn, then first come first served."""
        slot = (pool, fairness)
        turn = max(self._rounds.get(slot, 0), self._serving.get(pool, 0))
        self._rounds[slot] = turn + 1
        entry = _Entry((-run_priority, -priority_weight, turn, next(self._order)), item, pool)
        heapq.heappush(self._queues.setdefault(pool, []), entry)
        self._live[pool] = self._live.get(pool, 0) + 1
        return entry

    def cancel(self, entry: _Entry[T]) -> None:
        """Take a pushed item out of its queue (where it stays, skipped, until it comes up)."""
        if not entry.cancelled:
            entry.cancelled = True
            self._live[entry.pool] -= 1

    def take(self, allowed: Callable[[T], bool], now: float = 0.0) -> list[tuple[str, T]]:
        """Items that may start at ``now`` (monotonic seconds), each holding one slot of its
        pool and, in a rate-limited pool, one of its tokens."""
        started: list[tuple[str, T]] = []
        self.next_token, self.rate_limited, self.out_of_tokens = None, 0, {}
        for pool, queue in self._queues.items():
            if pool not in self.slots:
                continue
            bucket = self.rates.get(pool)
            deferred: list[_Entry[T]] = []
            while queue and self.running.get(pool, 0) < self.slots[pool]:
                if bucket is not None and self._out_of_tokens(pool, bucket, now):
                    break
                entry = heapq.heappop(queue)
                if entry.cancelled:
                    continue
                if not allowed(entry.item):
                    deferred.append(entry)
                    continue
                if bucket is not None:
                    bucket.take(now)
                self.running[pool] = self.running.get(pool, 0) + 1
                self._live[pool] -= 1
                self._serving[pool] = entry.sort_key[2]
                started.append((pool, entry.item))
            for entry in deferred:
                heapq.heappush(queue, entry)
        return started

    def _out_of_tokens(self, pool: str, bucket: Bucket, now: float) -> bool:
        """Whether ``pool``'s waiting items must wait for a token (noting when one frees)."""
        wait = bucket.wait(now)
        if wait == 0.0:
            return False
        due = now + wait
        self.next_token = due if self.next_token is None else min(self.next_token, due)
        self.rate_limited += self._live.get(pool, 0)
        self.out_of_tokens[pool] = self._live.get(pool, 0)
        return True

    def release(self, pool: str) -> None:
        self.running[pool] = max(0, self.running.get(pool, 0) - 1)

    def queued(self, pool: str) -> int:
        return self._live.get(pool, 0)

    def waiting_in_unknown_pools(self) -> list[tuple[str, T]]:
        """Items queued for pools that do not exist (removed from their queues)."""
        lost: list[tuple[str, T]] = []
        for pool in [p for p in self._queues if p not in self.slots]:
            lost.extend((pool, e.item) for e in self._queues.pop(pool) if not e.cancelled)
            self._live.pop(pool, None)
        return lost
