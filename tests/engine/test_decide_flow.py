"""A DAG's concurrency key, decided by the pure core with explicit moments: runs of one key
wait in trigger order (other keys pass them), the newest cancels the oldest, or a new one is
refused; a key that cannot be rendered refuses the trigger."""

from __future__ import annotations

import pytest

from pipeline_core.dag.flow import ConcurrencyKey
from pipeline_core.dag.model import Task
from pipeline_core.engine.core.messages import KillTry
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
