"""A DAG's concurrency key, decided by the pure core with explicit moments: runs of one key
wait in trigger order (other keys pass them), the newest cancels the oldest, or a new one is
refused; a key that cannot be rendered refuses the trigger."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from pipeline_core.dag.flow import ConcurrencyKey, RateLimit
from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import KillTry, PoolChanged, TokensDue
from pipeline_core.errors import Conflict, InvalidRequest
from pipeline_core.state import RunState
from tests.engine.decide_helpers import Core, dag


def keyed(on_conflict: str, limit: int = 1, key: str = "{{ dag_run.conf.env }}"):  # type: ignore[no-untyped-def]
    return dag(Task("a"), max_active_runs=10,
               run_concurrency=ConcurrencyKey(key, limit, on_conflict))  # fmt: skip


def state(core: Core, run_id: str) -> RunState:
    return core.decider.book.runs[("d", run_id)].state


def test_queue_holds_a_key_to_its_limit_in_trigger_order_and_lets_other_keys_pass() -> None:
    d = keyed("queue")
    core = Core(d)
    core.trigger(d, "p1", conf={"env": "prod"})
    core.trigger(d, "p2", seconds=1, conf={"env": "prod"})
    core.trigger(d, "s1", seconds=2, conf={"env": "staging"})
    core.trigger(d, "p3", seconds=3, conf={"env": "prod"})
    assert [state(core, r) for r in ("p1", "p2", "s1", "p3")] == [
        RunState.RUNNING, RunState.QUEUED, RunState.RUNNING, RunState.QUEUED
    ]  # fmt: skip
    core.finish("a", run_id="p1", seconds=4)
    assert state(core, "p2") is RunState.RUNNING and state(core, "p3") is RunState.QUEUED
    core.finish("a", run_id="p2", seconds=5)
    assert state(core, "p3") is RunState.RUNNING


def test_a_limit_of_two_runs_two_at_once() -> None:
    d = keyed("queue", limit=2, key="deploy")  # plain text: one key for every run
    core = Core(d)
    for index in range(3):
        core.trigger(d, f"r{index}", seconds=index)
    assert [state(core, f"r{i}") for i in range(3)] == [
        RunState.RUNNING, RunState.RUNNING, RunState.QUEUED
    ]  # fmt: skip


def test_cancel_running_cancels_the_oldest_of_the_key_and_kills_its_try() -> None:
    d = keyed("cancel_running")
    core = Core(d)
    core.trigger(d, "b1", conf={"env": "main"})
    core.trigger(d, "other", seconds=1, conf={"env": "feature"})
    core.trigger(d, "b2", seconds=2, conf={"env": "main"})
    assert state(core, "b2") is RunState.RUNNING and state(core, "other") is RunState.RUNNING
    assert ("d", "b1") not in core.decider.book.runs  # ended and forgotten
    assert "cancelled" in core.run_moves()
    kills = [e.key.run_id for e in core.effects if isinstance(e, KillTry)]
    assert kills == ["b1"]


def test_skip_new_refuses_a_trigger_naming_the_active_run_and_changes_nothing() -> None:
    d = keyed("skip_new")
    core = Core(d)
    core.trigger(d, "first", conf={"env": "prod"})
    with pytest.raises(Conflict, match="run 'first' of DAG 'd' holds concurrency key 'prod'"):
        core.trigger(d, "second", seconds=1, conf={"env": "prod"})
    assert ("d", "second") not in core.decider.book.runs
    core.finish("a", run_id="first", seconds=2)
    core.trigger(d, "third", seconds=3, conf={"env": "prod"})
    assert state(core, "third") is RunState.RUNNING


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({}, "the run's conf has no 'env'"),
        ({"env": {"a": 1}}, "must render to text, got dict"),
        ({"env": "x" * 201}, "renders to 201 characters"),
        ({"env": ""}, "renders to 0 characters"),
    ],
)
def test_a_key_that_cannot_be_rendered_refuses_the_trigger(conf, message) -> None:  # type: ignore[no-untyped-def]
    d = keyed("queue")
    core = Core(d)
    with pytest.raises(InvalidRequest, match=message):
        core.trigger(d, "r", conf=conf)
    assert ("d", "r") not in core.decider.book.runs


# --- a task's tries -----------------------------------------------------------------------
def fan(n: int, **task_kw: object):  # type: ignore[no-untyped-def]
    return dag(*(Task(f"t{i}", **task_kw) for i in range(n)), max_active_runs=10)  # type: ignore[arg-type]


def running(core: Core) -> list[str]:
    return sorted(core.decider.slots.active)  # type: ignore[arg-type]


def test_a_task_key_lets_so_many_tries_run_at_once_across_runs() -> None:
    d = fan(1, concurrency_key=ConcurrencyKey("{{ dag_run.conf.customer }}", 2))
    core = Core(d)
    for index, customer in enumerate(["acme", "acme", "acme", "other"]):
        core.trigger(d, f"r{index}", seconds=index, conf={"customer": customer})
    started = sorted(key.run_id for key in core.decider.slots.active)
    assert started == ["r0", "r1", "r3"]  # acme is full at two; other has its own key
    core.finish("t0", run_id="r0", seconds=5)
    assert sorted(key.run_id for key in core.decider.slots.active) == ["r1", "r2", "r3"]


def test_a_rate_limit_starts_tries_no_faster_than_its_tokens() -> None:
    d = fan(5, rate_limit=RateLimit("10/s", burst=2, key="api"))  # one bucket for all five
    core = Core(d)
    core.trigger(d, "r")
    assert len(core.decider.slots.active) == 2  # the burst
    timers = [(due, fire) for due, fire in core.timers() if isinstance(fire, TokensDue)]
    assert [round(due - 1000.0, 3) for due, _ in timers] == [0.1]
    core.send(TokensDue(), 0.1)
    assert len(core.decider.slots.active) == 3
    assert [round(d - 1000.0, 3) for d, f in core.timers() if isinstance(f, TokensDue)] == [0.2]
    core.send(TokensDue(), 0.15)  # early: nothing new, the timer for 0.2 stays
    assert len(core.decider.slots.active) == 3 and core.timers() == []
    core.send(TokensDue(), 0.3)  # 0.15 s more: 2 tokens (the bucket holds 2 at most)
    assert len(core.decider.slots.active) == 5


def test_rate_limit_keys_give_each_key_its_own_bucket() -> None:
    d = fan(1, rate_limit=RateLimit("1/m", key="{{ dag_run.conf.customer }}"))
    core = Core(d)
    core.trigger(d, "r0", conf={"customer": "acme"})
    core.trigger(d, "r1", conf={"customer": "acme"})
    assert [round(due - 1000.0) for due, f in core.timers() if isinstance(f, TokensDue)] == [60]
    core.trigger(d, "r2", conf={"customer": "other"})
    assert sorted(key.run_id for key in core.decider.slots.active) == ["r0", "r2"]


def test_a_task_key_that_cannot_render_fails_the_try_naming_why() -> None:
    d = fan(1, concurrency_key=ConcurrencyKey("{{ dag_run.conf.customer }}", 1))
    core = Core(d)
    core.trigger(d, "r", conf={})
    assert ("t0", "failed") in core.moves()
    assert core.decider.book.runs.get(("d", "r")) is None or state(core, "r") is RunState.FAILED


def test_tries_waiting_for_one_pool_are_served_round_robin_across_keys() -> None:
    d = fan(100, concurrency_key=ConcurrencyKey("{{ dag_run.conf.customer }}", 100))
    core = Core(d, pools={"default_pool": 0})
    for index in range(10):  # ten customers, each 100 tries queued after the one before
        core.trigger(d, f"c{index}", seconds=index, conf={"customer": f"c{index}"})
    core.send(PoolChanged("default_pool", 10), 10)
    started: list[str] = []
    seen: set[object] = set()
    seconds = 10.0
    while len(started) < 500:
        for key in list(core.decider.slots.active):
            if key not in seen:
                seen.add(key)
                started.append(key.run_id)
        for key in list(core.decider.slots.active):
            seconds += 0.001
            core.finish(key.task_id, run_id=key.run_id, seconds=seconds)
    shares = Counter(started[:500])
    assert len(shares) == 10 and max(shares.values()) / min(shares.values()) <= 1.1, shares


# --- run priority ---------------------------------------------------------------------------
def test_a_higher_priority_run_starts_first_and_its_tries_go_first_in_a_pool() -> None:
    d = dag(Task("a"), max_active_runs=1)
    core = Core(d)
    core.trigger(d, "now")
    core.trigger(d, "low", seconds=1)
    core.trigger(d, "high", seconds=2, priority=5)
    core.trigger(d, "mid", seconds=3, priority=1)
    assert list(core.decider.book.waiting["d"]) == [("d", "high"), ("d", "mid"), ("d", "low")]
    core.finish("a", run_id="now", seconds=4)
    assert state(core, "high") is RunState.RUNNING

    fanned = fan(3)
    tries = Core(fanned, pools={"default_pool": 0})
    tries.trigger(fanned, "plain")
    tries.trigger(fanned, "urgent", seconds=1, priority=10)
    tries.send(PoolChanged("default_pool", 3), 2)
    assert {key.run_id for key in tries.decider.slots.active} == {"urgent"}


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("concurrency: {key: '{{ xcom.a.b }}', limit: 1}", "is not known when a run is triggered"),
        ("concurrency: {key: k, on_conflict: cancel_running}", "a task's tries can only queue"),
        ("concurrency: 3", "expected {key, limit}"),
        ("rate_limit: {rate: -1/s}", "is not N/s, N/m or N/h"),
        ("rate_limit: {rate: 100/minute, burst: 0}", "must be a whole number ≥ 1"),
        ("rate_limit: {rate: 5/h, key: '{{ map.x }}'}", "must be text or a template"),
        ("rate_limit: {rate: 5/h, every: 1}", "expected {rate:"),
    ],
)
def test_bad_task_limits_are_load_errors_naming_the_setting(task: str, message: str) -> None:
    from pipeline_core.dag.yaml_loader import load_dag_text
    from pipeline_core.errors import DagValidationError

    with pytest.raises(DagValidationError, match=re.escape(message)):
        load_dag_text(f"tasks:\n  a: {{{task}}}\n", default_dag_id="d")


def test_rates_read_per_second_minute_and_hour() -> None:
    from pipeline_core.dag.flow import parse_rate

    assert parse_rate("100/minute") == pytest.approx(100 / 60)
    assert parse_rate("10/s") == 10 and parse_rate("7200/h") == 2 and parse_rate("1.5/sec") == 1.5


def test_runs_waiting_for_a_dag_are_started_round_robin_across_keys() -> None:
    from pipeline_core.engine.core.messages import Pause

    d = dag(Task("a"), max_active_runs=10,
            run_concurrency=ConcurrencyKey("{{ dag_run.conf.customer }}", 100))  # fmt: skip
    core = Core(d)
    core.send(Pause("d", True))
    for customer in range(10):  # ten customers, each 100 runs queued after the one before
        for index in range(100):
            core.trigger(d, f"c{customer}-{index}", conf={"customer": f"c{customer}"})
    core.send(Pause("d", False), 1)
    started: list[str] = []
    seconds = 1.0
    while len(started) < 500:
        running = [key for key, run in core.decider.book.runs.items()
                   if run.state is RunState.RUNNING]  # fmt: skip
        for dag_id, run_id in running:
            started.append(run_id.split("-")[0])
            seconds += 0.001
            core.finish("a", run_id=run_id, seconds=seconds, dag_id=dag_id)
    shares = Counter(started[:500])
    assert len(shares) == 10 and max(shares.values()) / min(shares.values()) <= 1.1, shares
