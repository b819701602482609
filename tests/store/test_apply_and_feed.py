"""``store.runs.apply`` (a wake-up's writes in one transaction) and ``store.feed`` (the one way to
follow the event log), over every backend."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from pipeline_core.errors import Conflict
from pipeline_core.model import MoveRun, TaskChange, TaskSpec, new_run
from pipeline_core.state import RunState, TaskState
from pipeline_core.store import open_store
from pipeline_core.store.feed import EventFeed
from pipeline_core.store.types import EventQuery, TaskInstanceQuery
from tests.store.helpers import BASE, key

Q, RUN, OK = TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCESS


def create(run_id: str = "r1"):  # type: ignore[no-untyped-def]
    return new_run("etl", (TaskSpec("a"), TaskSpec("b")), now=BASE, run_id=run_id)


def test_apply_writes_a_trigger_in_one_transaction_stamped_with_now(store):
    seen: list[list[str]] = []
    store.add_listener(lambda events: seen.append([e.type for e in events]))
    later = BASE + timedelta(seconds=5)
    store.runs.apply(
        [
            create(),
            MoveRun("etl", "r1", RunState.QUEUED, RunState.RUNNING),
            TaskChange(key("a"), Q, RUN, try_number=1),
        ],
        now=later,
    )
    assert seen == [["run.state_changed", "run.state_changed", "task.state_changed"]]
    run = store.runs.get_run("etl", "r1")
    assert (run.state, run.start_date, run.queued_at) == (RunState.RUNNING, later, BASE)
    a = store.tasks.get_task_instance(key("a"))
    assert (a.state, a.try_number, a.start_date) == (RUN, 1, later)


def test_apply_is_all_or_nothing(store):
    store.runs.apply([create()])
    before = store.events.event_bounds()
    with pytest.raises(Conflict):
        store.runs.apply(
            [
                TaskChange(key("a"), Q, RUN, try_number=1),
                MoveRun("etl", "r1", RunState.QUEUED, RunState.RUNNING),
                TaskChange(key("b"), RUN, OK),  # b is queued: this write fails
            ]
        )
    assert store.events.event_bounds() == before
    assert store.runs.get_run("etl", "r1").state is RunState.QUEUED
    states = {
        ti.task_id: ti.state
        for ti in store.tasks.query_task_instances(TaskInstanceQuery(dag_id="etl")).items
    }
    assert states == {"a": Q, "b": Q}
    with pytest.raises(Conflict, match="already exists"):
        store.runs.apply([create()])


def test_the_feed_delivers_this_processes_commits_at_once_in_order(store):
    got: list[int] = []
    store.feed.subscribe(lambda events: got.extend(e.seq for e in events), other_processes=False)
    threads = [
        threading.Thread(target=lambda i=i: store.runs.apply([create(f"r{i}")])) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == sorted(got) and len(got) == len(set(got)) == 8  # no gap, no repeat
    store.runs.apply([MoveRun("etl", "r0", RunState.QUEUED, RunState.RUNNING)])
    assert len(got) == 9  # delivered before apply returned


def test_the_feed_follows_another_processes_commits(sql_store):
    other = open_store(sql_store.url)  # as another process would open it
    arrived = threading.Event()
    got: list[str] = []

    def on_events(events):  # type: ignore[no-untyped-def]
        got.extend(e.run_id or "" for e in events)
        arrived.set()

    feed = EventFeed(sql_store)
    feed.subscribe(on_events)
    try:
        other.runs.apply([create("elsewhere")])  # another store object: no listener of ours runs
        assert arrived.wait(10)
        assert got == ["elsewhere"]
        sql_store.runs.apply([create("here")])
        assert got == ["elsewhere", "here"]
        assert [e.run_id for e in sql_store.events.read_events(EventQuery())] == got
    finally:
        feed.close()
        other.close()


def test_a_failing_subscriber_does_not_stop_the_others(store, caplog):
    got: list[int] = []

    def broken(events):  # type: ignore[no-untyped-def]
        raise RuntimeError("subscriber bug")

    store.feed.subscribe(broken, other_processes=False)
    store.feed.subscribe(lambda events: got.extend(e.seq for e in events), other_processes=False)
    store.runs.apply([create()])
    store.runs.apply([create("r2")])
    assert len(got) == 2 and "an event subscriber failed" in caplog.text
    store.feed.unsubscribe(broken)
    store.runs.apply([create("r3")])
    assert len(got) == 3


def test_subscribers_get_the_very_events_the_log_keeps(store):
    got: list = []
    store.feed.subscribe(got.extend, other_processes=False)
    later = BASE + timedelta(seconds=3)
    store.runs.apply(
        [
            create(),
            MoveRun("etl", "r1", RunState.QUEUED, RunState.RUNNING),
            TaskChange(key("a"), Q, RUN, try_number=1),
        ],
        now=BASE,
    )
    store.runs.apply(
        [
            TaskChange(key("a"), RUN, TaskState.FAILED, error="boom", reason="it broke"),
            TaskChange(key("b"), Q, RUN, try_number=1),
            TaskChange(key("b"), RUN, OK),
            MoveRun("etl", "r1", RunState.RUNNING, RunState.FAILED, reason="done"),
        ],
        now=later,
    )
    logged = store.events.read_events(EventQuery())
    assert [(e.seq, e.type, dict(e.payload), e.timestamp) for e in got] == [
        (e.seq, e.type, dict(e.payload), e.timestamp) for e in logged
    ]
    a = store.tasks.get_task_instance(key("a"))
    assert (a.state, a.error, a.duration_ms) == (TaskState.FAILED, "boom", 3000)
    assert store.runs.get_run("etl", "r1").duration_ms == 3000
