"""``flow.waiting`` events from the pure core: a run waiting for its DAG's concurrency key,
and tries held back by a task's key, a task's rate or a pool's rate — each told once when
the wait begins, again only after it ended."""

from __future__ import annotations

from pipeline_core.dag.flow import ConcurrencyKey, RateLimit
from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import PoolChanged, TokensDue
from pipeline_core.model import NoteWait
from tests.engine.decide_helpers import Core, dag


def _waits(core: Core) -> list[tuple[str | None, str | None, str, dict]]:  # type: ignore[type-arg]
    return [(e.dag_id, e.run_id, e.reason, dict(e.detail))
            for e in core.effects if isinstance(e, NoteWait)]  # fmt: skip


def test_a_run_waiting_for_its_key_is_told_once_naming_the_holder() -> None:
    d = dag(Task("a"), max_active_runs=5,
            run_concurrency=ConcurrencyKey("{{ dag_run.conf.env }}", 1, "queue"))  # fmt: skip
    core = Core(d)
    core.trigger(d, "first", conf={"env": "prod"})
    assert _waits(core) == []
    core.trigger(d, "second", conf={"env": "prod"})
    assert _waits(core) == [
        ("d", "second", "concurrency_key", {"key": "prod", "limit": 1, "held_by": ["first"]})
    ]
    core.trigger(d, "other", conf={"env": "dev"})  # another key: it starts, nothing told
    assert _waits(core) == []
    core.finish("a", run_id="other")  # a new decision round: "second" is not told again
    assert _waits(core) == []


def test_tries_held_back_by_a_rate_are_told_once_per_wait() -> None:
    d = dag(
        *[Task(f"t{i}", rate_limit=RateLimit("10/s", key="api")) for i in range(3)],
        max_active_runs=2,
    )
    core = Core(d)
    core.trigger(d)
    assert _waits(core) == [
        ("d", None, "rate_limit", {"key": "api", "tries": 2, "next_token_in": 0.1})
    ]
    core.send(TokensDue(), 0.1)
    assert _waits(core) == []  # the same wait goes on
    core.send(TokensDue(), 0.2)
    core.trigger(d, "later", seconds=5.0)  # the wait had ended: a new one is told
    assert [w[2] for w in _waits(core)] == ["rate_limit"]


def test_a_task_key_and_a_pools_rate_are_told() -> None:
    d = dag(Task("k1", concurrency_key=ConcurrencyKey("shared", 1, "queue")),
            Task("k2", concurrency_key=ConcurrencyKey("shared", 1, "queue")),
            Task("p1", pool="api"), Task("p2", pool="api"))  # fmt: skip
    core = Core(d, pools={"default_pool": 16})
    core.send(PoolChanged("api", 4, rate=1.0, burst=1))
    core.trigger(d)
    assert sorted((w[2], w[3]["key"], w[3]["tries"]) for w in _waits(core)) == [
        ("concurrency_key", "shared", 1),
        ("pool_rate_limit", "api", 1),
    ]
    pool_wait = next(w for w in _waits(core) if w[2] == "pool_rate_limit")
    assert pool_wait[0] is None and pool_wait[3]["next_token_in"] == 1.0
