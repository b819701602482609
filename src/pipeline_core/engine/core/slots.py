"""Which tries hold a slot: the pool queues of ready tasks, the tries the executor holds,
and each DAG's concurrency. Pure: part of the engine's core."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.engine.core.pools import PoolSlots
from pipeline_core.model import TaskKey


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

    def queue(self, key: TaskKey, pool: str, priority_weight: int) -> None:
        """Wait for a slot of ``pool``: higher priority first, FIFO on ties."""
        self._queued[key] = self.pools.push(pool, priority_weight, key)

    def unqueue(self, key: TaskKey) -> None:
        entry = self._queued.pop(key, None)
        if entry is not None:
            self.pools.cancel(entry)

    def take(self, concurrency: Callable[[str], int]) -> list[TaskKey]:
        """Queued tasks that may start now, each holding a pool slot and one of its DAG's
        ``concurrency(dag_id)`` places."""

        def admit(key: TaskKey) -> bool:
            if self.dag_running[key.dag_id] >= concurrency(key.dag_id):
                return False
            self.dag_running[key.dag_id] += 1
            return True

        started = [key for _pool, key in self.pools.take(admit)]
        for key in started:
            self._queued.pop(key, None)
        return started

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

    def drop(self, key: TaskKey) -> Active | None:
        """Stop tracking a task's try and give back what it held."""
        self.unqueue(key)
        active = self.active.pop(key, None)
        if active is not None:
            self.release(active)
        return active

    def set_pool(self, name: str, slots: int | None) -> None:
        if slots is None:
            self.pools.remove_pool(name)
        else:
            self.pools.set_slots(name, slots)

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
