"""The store contract over every backend: task instances, XCom, pools, logs, heartbeats."""

from __future__ import annotations

import threading

import pytest

from pipeline_core.errors import Conflict, InvalidRequest, InvalidTransition, NotFound
from pipeline_core.model import TaskChange
from pipeline_core.state import TaskState
from pipeline_core.store.types import EventQuery, Pool, TaskInstanceQuery
from tests.store.helpers import key, move, new_run

Q, RUN, OK, FAIL, RETRY = "queued", "running", "success", "failed", "up_for_retry"


# --- task instances -----------------------------------------------------------------


def test_task_transitions_with_events_and_timestamps(store):
    new_run(store)
    running = move(store, "a", Q, RUN, try_number=1)
    assert (running.state, running.try_number, running.end_date) == (TaskState.RUNNING, 1, None)
    assert running.start_date is not None
    failed = move(store, "a", RUN, RETRY, error="boom")
    assert failed.error == "boom" and failed.end_date is not None and failed.duration_ms is not None
    move(store, "a", RETRY, Q)
    assert store.tasks.get_task_instance(key("a")).start_date is None
    move(store, "a", Q, RUN, try_number=2)
    done = move(store, "a", RUN, OK)
    assert (done.try_number, done.error) == (2, None)
    events = store.events.read_events(EventQuery(types=("task.state_changed",)))
    assert [
        (e.payload["previous_state"], e.payload["new_state"], e.payload["try_number"])
        for e in events
    ] == [
        (Q, RUN, 1),
        (RUN, RETRY, 1),
        (RETRY, Q, 1),
        (Q, RUN, 2),
        (RUN, OK, 2),
    ]
    assert events[1].payload["error"] == "boom"
    assert set(events[0].to_dict()) == {
        "seq",
        "type",
        "dag_id",
        "run_id",
        "task_id",
        "map_index",
        "try_number",
        "previous_state",
        "new_state",
        "timestamp",
    }
    assert events[0].to_dict()["timestamp"].endswith("Z")


def test_cas_conflict_and_illegal_transition_write_nothing(store):
    new_run(store)
    with pytest.raises(Conflict, match="is 'queued', not 'running'"):
        move(store, "a", RUN, OK)
    with pytest.raises(InvalidTransition, match="'queued' to 'success'"):
        move(store, "a", Q, OK)
    with pytest.raises(NotFound, match="no task 'zz'"):
        move(store, "zz", Q, RUN)
    seq = store.events.event_bounds()[1]
    changes = [
        TaskChange(key("a"), TaskState.QUEUED, TaskState.RUNNING),
        TaskChange(key("b"), TaskState.RUNNING, TaskState.SUCCESS),  # loses
    ]
    with pytest.raises(Conflict):
        store.tasks.transition_tasks(changes)
    assert store.tasks.get_task_instance(key("a")).state is TaskState.QUEUED
    assert store.events.event_bounds()[1] == seq


def test_batch_transitions_are_atomic_and_ordered(store):
    new_run(store)
    changes = [TaskChange(key(t), TaskState.QUEUED, TaskState.RUNNING, try_number=1) for t in "abc"]
    assert [t.task_id for t in store.tasks.transition_tasks(changes)] == ["a", "b", "c"]
    seqs = [e.seq for e in store.events.read_events(EventQuery(types=("task.state_changed",)))]
    assert seqs == sorted(seqs) and len(seqs) == 3 and seqs[-1] - seqs[0] == 2


def test_cas_race_has_exactly_one_winner(store):
    for round_number in range(10):
        run_id = f"race{round_number}"
        new_run(store, run_id=run_id, day=round_number)
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def contender(run_id=run_id, barrier=barrier, outcomes=outcomes):  # type: ignore[no-untyped-def]
            barrier.wait()
            try:
                move(store, "a", Q, RUN, run_id=run_id, try_number=1)
                outcomes.append("won")
            except Conflict:
                outcomes.append("lost")

        threads = [threading.Thread(target=contender) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(outcomes) == ["lost", "won"]
        events = store.events.read_events(EventQuery(run_id=run_id, types=("task.state_changed",)))
        assert len(events) == 1


def test_task_instance_queries(store):
    new_run(store, run_id="old", day=0)
    new_run(store, run_id="new", day=1)
    move(store, "b", Q, RUN, run_id="old")
    move(store, "b", RUN, FAIL, run_id="old")
    history = store.tasks.query_task_instances(TaskInstanceQuery(dag_id="etl", task_id="b")).items
    assert [(t.run_id, t.state) for t in history] == [
        ("new", TaskState.QUEUED),
        ("old", TaskState.FAILED),
    ]
    failed = store.tasks.query_task_instances(TaskInstanceQuery(states=(TaskState.FAILED,)))
    assert [(t.run_id, t.task_id) for t in failed.items] == [("old", "b")] and failed.total == 1
    page = store.tasks.query_task_instances(
        TaskInstanceQuery(run_id="old", dag_id="etl", limit=2, offset=1)
    )
    assert [t.task_id for t in page.items] == ["b", "c"] and page.total == 3
    with pytest.raises(NotFound):
        store.tasks.get_task_instance(key("a", run_id="zz"))


# --- XCom ---------------------------------------------------------------------------


def test_xcom_set_get_list_delete(store):
    new_run(store)
    entry = store.task_data.set_xcom(key("a"), "return_value", {"rows": 3, "names": ["é", "x"]})
    assert entry.size_bytes == len('{"rows":3,"names":["é","x"]}'.encode())
    assert store.task_data.get_xcom(key("a"), "return_value").value == {
        "rows": 3,
        "names": ["é", "x"],
    }
    store.task_data.set_xcom(key("a"), "nothing", None)
    stored_null = store.task_data.get_xcom(key("a"), "nothing")
    assert stored_null is not None and stored_null.value is None
    assert store.task_data.get_xcom(key("a"), "absent") is None
    store.task_data.set_xcom(key("a"), "return_value", 7)
    assert [(e.key, e.value) for e in store.task_data.list_xcom(key("a"))] == [
        ("nothing", None),
        ("return_value", 7),
    ]
    assert store.task_data.delete_xcom(key("a"), "nothing") == 1
    assert store.task_data.delete_xcom(key("a"), "nothing") == 0
    store.task_data.set_xcom(key("a"), "other", "x")
    assert store.task_data.delete_xcom(key("a")) == 2
    assert store.task_data.list_xcom(key("a")) == []


def test_xcom_bad_input(store):
    new_run(store)
    with pytest.raises(InvalidRequest, match="XCom value 'v' is not JSON-serialisable"):
        store.task_data.set_xcom(key("a"), "v", {1, 2})
    with pytest.raises(InvalidRequest):
        store.task_data.set_xcom(key("a"), "v", float("nan"))
    assert store.task_data.get_xcom(key("a"), "v") is None
    with pytest.raises(NotFound):
        store.task_data.set_xcom(key("zz"), "v", 1)


# --- pools --------------------------------------------------------------------------


def test_pools(store):
    assert store.pools.list_pools() == [Pool("default_pool", 16, "Default pool")]
    store.pools.create_pool(Pool("db", 2, "database"))
    with pytest.raises(Conflict, match="pool 'db' already exists"):
        store.pools.create_pool(Pool("db", 3))
    assert store.pools.update_pool("db", slots=5).slots == 5
    assert store.pools.update_pool("db", description="warehouse") == Pool("db", 5, "warehouse")
    assert [p.name for p in store.pools.list_pools()] == ["db", "default_pool"]
    with pytest.raises(Conflict, match="default_pool cannot be deleted"):
        store.pools.delete_pool("default_pool")
    store.pools.delete_pool("db")
    with pytest.raises(NotFound, match="no pool 'db'"):
        store.pools.get_pool("db")
    with pytest.raises(NotFound):
        store.pools.update_pool("db", slots=1)
    changes = [
        e.payload["change"] for e in store.events.read_events(EventQuery(types=("pool.updated",)))
    ]
    assert changes == ["created", "updated", "updated", "deleted"]


def test_pool_usage_counts_running_and_queued(store):
    new_run(store)
    move(store, "a", Q, RUN)
    usage = store.pools.pool_usage()
    assert usage["default_pool"] == {TaskState.RUNNING: 1, TaskState.QUEUED: 2}


# --- logs ---------------------------------------------------------------------------


def test_logs_append_and_read_with_offsets(store):
    new_run(store)
    store.task_data.append_log(key("a"), 1, "line one\n")
    store.task_data.append_log(key("a"), 1, "línea dos\n")
    store.task_data.append_log(key("a"), 2, "second try\n")
    whole = store.task_data.read_log(key("a"), 1)
    assert whole.text == "line one\nlínea dos\n" and whole.size == len(whole.text.encode())
    assert (whole.offset, whole.next_offset, whole.truncated) == (0, whole.size, False)
    tail = store.task_data.read_log(key("a"), 1, offset=9)
    assert tail.text == "línea dos\n" and tail.offset == 9
    part = store.task_data.read_log(key("a"), 1, offset=0, limit=4)
    assert (part.text, part.next_offset) == ("line", 4)
    assert store.task_data.read_log(key("a"), 2).text == "second try\n"
    assert store.task_data.read_log(key("a"), 3).text == ""
    assert store.task_data.read_log(key("a"), 1, offset=whole.size).text == ""
    with pytest.raises(NotFound):
        store.task_data.read_log(key("zz"), 1)


def test_logs_are_capped_per_try(store):
    store.log_cap_bytes = 64
    new_run(store)
    for i in range(20):
        store.task_data.append_log(key("a"), 1, f"line {i:02d} of output\n")
    log = store.task_data.read_log(key("a"), 1)
    assert log.truncated is True
    assert log.text.startswith("line 00 of output\n")
    assert log.text.endswith("[log truncated: the cap for one try was reached]\n")
    assert log.text.count("truncated") == 1
    assert log.size <= 64 + 60


# --- heartbeats ---------------------------------------------------------------------


def test_heartbeats(store):
    first = store.heartbeats.heartbeat("sched-1", kind="scheduler", hostname="h", pid=1)
    second = store.heartbeats.heartbeat("sched-1", kind="scheduler", hostname="h", pid=1)
    store.heartbeats.heartbeat("api-1", kind="api", hostname="h", pid=2)
    beats = store.heartbeats.list_heartbeats("scheduler")
    assert [b.component_id for b in beats] == ["sched-1"]
    assert beats[0].last_heartbeat >= first.last_heartbeat
    assert second.last_heartbeat >= first.last_heartbeat
    assert len(store.heartbeats.list_heartbeats()) == 2
