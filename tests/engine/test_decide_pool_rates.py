"""A pool's rate limit in the pure core: its tries start no faster than its tokens, the
next token wakes the core, another pool is not held back, and a resize keeps the tokens."""

from __future__ import annotations

from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import PoolChanged, TokensDue
from tests.engine.decide_helpers import Core, dag


def _token_timers(core: Core) -> list[float]:
    return [round(due - 1000.0, 3) for due, fire in core.timers() if isinstance(fire, TokensDue)]


def _running(core: Core, pool: str) -> int:
    return sum(1 for a in core.decider.slots.active.values() if a.pool == pool)


def test_a_pools_tries_start_no_faster_than_its_rate() -> None:
    d = dag(*[Task(f"t{i}", pool="api") for i in range(5)], Task("free"))
    core = Core(d, pools={"default_pool": 16})
    core.send(PoolChanged("api", 10, rate=10.0, burst=2))
    core.trigger(d)
    assert _running(core, "api") == 2 and _running(core, "default_pool") == 1
    assert _token_timers(core) == [0.1]
    assert core.decider.slots.rate_limited == 3
    core.send(TokensDue(), 0.1)
    assert _running(core, "api") == 3 and _token_timers(core) == [0.2]
    core.send(TokensDue(), 0.05 + 0.1)  # early: nothing starts, the timer stays
    assert _running(core, "api") == 3 and core.timers() == []
    core.send(TokensDue(), 0.5)  # the bucket holds 2 at most
    assert _running(core, "api") == 5


def test_a_resize_keeps_the_tokens_and_taking_the_rate_off_lets_all_start() -> None:
    d = dag(*[Task(f"t{i}", pool="api") for i in range(4)])
    core = Core(d, pools={"default_pool": 16})
    core.send(PoolChanged("api", 10, rate=1 / 60, burst=1))
    core.trigger(d)
    assert _running(core, "api") == 1 and _token_timers(core) == [60.0]
    core.send(PoolChanged("api", 20, rate=1 / 60, burst=1), 1.0)  # a resize: no new tokens
    assert _running(core, "api") == 1
    core.send(PoolChanged("api", 20), 2.0)
    assert _running(core, "api") == 4
