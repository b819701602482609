"""One behavioural contract, checked against every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from pipeline_core.errors import Conflict, InvalidRequest, InvalidTransition, NotFound
from pipeline_core.model import TaskChange
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import DagRecord, EventQuery, Pool, RunQuery, TaskInstanceQuery
from tests.store.helpers import BASE, dag, key, move, new_run

Q, RUN, OK, FAIL, RETRY = "queued", "running", "success", "failed", "up_for_retry"


# --- DAGs ---------------------------------------------------------------------------


def test_upsert_get_and_list_dags(store):
    store.upsert_dag(dag("etl", tags=("etl", "prod"), schedule="@daily", task_count=3))
    store.upsert_dag(dag("report", tags=("report",), description="weekly"))
    store.upsert_dag(dag("ETL_backfill", tags=("etl",), is_paused=True))
    got = store.get_dag("etl")
    assert (got.schedule, got.tags, got.task_count, got.is_paused) == (
        "@daily",
        ("etl", "prod"),
        3,
        False,
    )
    assert [d.dag_id for d in store.list_dags().items] == ["ETL_backfill", "etl", "report"]
    assert [d.dag_id for d in store.list_dags(tags=["etl"]).items] == ["ETL_backfill", "etl"]
    assert [d.dag_id for d in store.list_dags(tags=["report", "prod"]).items] == ["etl", "report"]
    assert [d.dag_id for d in store.list_dags(is_paused=True).items] == ["ETL_backfill"]
    assert [d.dag_id for d in store.list_dags(dag_id_pattern="etl").items] == [
        "ETL_backfill",
        "etl",
    ]
    assert [d.dag_id for d in store.list_dags(dag_id_pattern="etl", is_paused=False).items] == [
        "etl"
    ]
    page = store.list_dags(limit=2, offset=1)
    assert (page.total, [d.dag_id for d in page.items], page.has_more) == (
        3,
        ["etl", "report"],
        False,
    )
    assert store.list_dags(dag_id_pattern="%").total == 0
    assert store.list_dags(dag_id_pattern="_").total == 1


def test_dag_definition_round_trips(store):
    definition = {"tasks": [{"task_id": "a", "depends_on": []}], "nested": {"x": [1, 2.5, None]}}
    store.upsert_dag(dag("etl", definition=definition, definition_hash="abc"))
    assert store.get_dag("etl").definition == definition


def test_upsert_keeps_pause_state_and_only_emits_on_change(store):
    store.upsert_dag(dag("etl"))
    store.set_paused("etl", True)
    store.upsert_dag(dag("etl", description="changed", is_paused=False))
    assert store.get_dag("etl").is_paused is True
    before = store.event_bounds()[1]
    store.upsert_dag(dag("etl", description="changed"))
    assert store.event_bounds()[1] == before
    changes = [e.payload["change"] for e in store.read_events(EventQuery(types=("dag.updated",)))]
    assert changes == ["created", "paused", "updated"]


def test_set_paused_and_missing_dag(store):
    store.upsert_dag(dag("etl"))
    assert store.set_paused("etl", True).is_paused is True
    assert store.set_paused("etl", False).is_paused is False
    with pytest.raises(NotFound, match="no DAG 'nope'"):
        store.get_dag("nope")
    with pytest.raises(NotFound):
        store.set_paused("nope", True)


def test_deactivate_missing_dags(store):
    for dag_id in ("a", "b", "c"):
        store.upsert_dag(dag(dag_id))
    assert store.deactivate_missing_dags(["a"]) == ["b", "c"]
    assert [d.dag_id for d in store.list_dags(is_active=True).items] == ["a"]
    assert store.deactivate_missing_dags(["a"]) == []


def test_not_json_is_refused_before_writing(store):
    with pytest.raises(InvalidRequest, match="not JSON-serialisable"):
        store.upsert_dag(DagRecord("etl", definition={"x": object()}))
    with pytest.raises(NotFound):
        store.get_dag("etl")
    with pytest.raises(InvalidRequest, match="conf"):
        new_run(store, conf={"when": object()})
    with pytest.raises(NotFound):
        store.get_run("etl", "r1")
    assert store.event_bounds() == (0, 0)


# --- runs ---------------------------------------------------------------------------


def test_create_run_with_its_task_instances(store):
    run = new_run(store, conf={"x": 1}, note="hello")
    assert run.state is RunState.QUEUED and run.queued_at is not None
    got = store.get_run("etl", "r1")
    assert (got.conf, got.note, got.logical_date) == ({"x": 1}, "hello", BASE)
    tis = store.query_task_instances(TaskInstanceQuery(dag_id="etl", run_id="r1")).items
    assert [(t.task_id, t.state, t.try_number, t.max_tries) for t in tis] == [
        ("a", TaskState.QUEUED, 0, 2),
        ("b", TaskState.QUEUED, 0, 2),
        ("c", TaskState.QUEUED, 0, 2),
    ]
    [event] = store.read_events(EventQuery())
    assert event.type == "run.state_changed"
    assert event.payload["previous_state"] is None and event.payload["new_state"] == "queued"


def test_run_uniqueness(store):
    new_run(store, run_id="s1", run_type="scheduled")
    with pytest.raises(Conflict, match="already exists"):
        new_run(store, run_id="s1")
    with pytest.raises(Conflict, match="already has a scheduled run"):
        new_run(store, run_id="s2", run_type="scheduled")
    new_run(store, run_id="m1", run_type="manual")  # manual runs may share a logical date
    new_run(store, dag_id="other", run_id="s1", run_type="scheduled")
    assert store.query_runs(RunQuery()).total == 3


def test_run_transitions_stamp_dates(store):
    new_run(store)
    running = store.transition_run("etl", "r1", RunState.QUEUED, RunState.RUNNING)
    assert running.start_date is not None and running.end_date is None
    done = store.transition_run("etl", "r1", RunState.RUNNING, RunState.SUCCESS)
    assert done.end_date is not None and done.duration_ms is not None and done.duration_ms >= 0
    again = store.transition_run("etl", "r1", RunState.SUCCESS, RunState.RUNNING, reason="retry")
    assert again.end_date is None and again.start_date == running.start_date
    events = store.read_events(EventQuery(types=("run.state_changed",)))
    assert [(e.payload["previous_state"], e.payload["new_state"]) for e in events] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "success"),
        ("success", "running"),
    ]
    assert events[-1].payload["reason"] == "retry"


def test_run_transition_errors(store):
    new_run(store)
    with pytest.raises(InvalidTransition, match="'queued' to 'success'"):
        store.transition_run("etl", "r1", RunState.QUEUED, RunState.SUCCESS)
    with pytest.raises(Conflict, match="is 'queued', not 'running'"):
        store.transition_run("etl", "r1", RunState.RUNNING, RunState.SUCCESS)
    with pytest.raises(NotFound, match="no run 'zz'"):
        store.transition_run("etl", "zz", RunState.QUEUED, RunState.RUNNING)
    assert store.get_run("etl", "r1").state is RunState.QUEUED


def test_delete_run_removes_everything_of_it(store):
    new_run(store)
    store.set_xcom(key("a"), "return_value", 1)
    store.append_log(key("a"), 1, "hello")
    store.delete_run("etl", "r1")
    with pytest.raises(NotFound):
        store.get_run("etl", "r1")
    with pytest.raises(NotFound):
        store.get_task_instance(key("a"))
    assert store.get_xcom(key("a"), "return_value") is None
    with pytest.raises(NotFound):
        store.delete_run("etl", "r1")
    new_run(store)  # the ids are free again
    assert store.read_log(key("a"), 1).text == ""


def test_prune_deletes_only_old_finished_runs(store):
    for day in range(4):
        new_run(store, run_id=f"r{day}", day=day)
    for day in (0, 1, 3):
        store.transition_run("etl", f"r{day}", RunState.QUEUED, RunState.CANCELLED)
    new_run(store, dag_id="other", run_id="o", day=0)
    assert store.prune_runs("etl", BASE + timedelta(days=2)) == 2
    remaining = sorted(r.run_id for r in store.query_runs(RunQuery()).items)
    assert remaining == ["o", "r2", "r3"]


def _finish(store, run_id, seconds_apart=False):  # type: ignore[no-untyped-def]
    store.transition_run("etl", run_id, RunState.QUEUED, RunState.RUNNING)
    store.transition_run("etl", run_id, RunState.RUNNING, RunState.SUCCESS)


def test_query_runs_filters_combined(store):
    for day in range(6):
        new_run(store, run_id=f"r{day}", day=day, run_type="scheduled" if day % 2 else "manual")
    for day in (1, 2, 3):
        _finish(store, f"r{day}")
    store.transition_run("etl", "r4", RunState.QUEUED, RunState.CANCELLED)
    new_run(store, dag_id="other", run_id="x", day=2)

    def ids(**filters):  # type: ignore[no-untyped-def]
        return sorted(r.run_id for r in store.query_runs(RunQuery(**filters)).items)

    assert ids(dag_id="etl", states=(RunState.SUCCESS,)) == ["r1", "r2", "r3"]
    assert ids(dag_id="etl", states=(RunState.SUCCESS, RunState.CANCELLED)) == [
        "r1",
        "r2",
        "r3",
        "r4",
    ]
    assert ids(dag_id="etl", run_types=("scheduled",)) == ["r1", "r3", "r5"]
    assert ids(dag_id="etl", run_types=("scheduled",), states=(RunState.SUCCESS,)) == ["r1", "r3"]
    assert ids(
        logical_date_gte=BASE + timedelta(days=2), logical_date_lte=BASE + timedelta(days=3)
    ) == [
        "r2",
        "r3",
        "x",
    ]
    started = store.get_run("etl", "r2").start_date
    assert ids(dag_id="etl", start_date_gte=started) == ["r2", "r3"]
    assert ids(dag_id="etl", end_date_lte=store.get_run("etl", "r1").end_date) == ["r1"]
    assert ids(states=(RunState.FAILED,)) == []


def test_query_runs_order_ties_nulls_and_pages(store):
    for i in range(5):
        new_run(store, run_id=f"r{i}", day=i % 2)  # logical dates tie in pairs
    _finish(store, "r3")
    _finish(store, "r1")

    def order(order_by, **kw):  # type: ignore[no-untyped-def]
        return [
            r.run_id
            for r in store.query_runs(RunQuery(dag_id="etl", order_by=order_by, **kw)).items
        ]

    assert order("logical_date") == ["r0", "r2", "r4", "r1", "r3"]
    assert order("-logical_date") == ["r3", "r1", "r4", "r2", "r0"]
    assert order("start_date") == ["r3", "r1", "r0", "r2", "r4"]  # NULLs last either way
    assert order("-start_date") == ["r1", "r3", "r4", "r2", "r0"]
    assert order("end_date")[:2] == ["r3", "r1"]
    assert order("duration")[2:] == ["r0", "r2", "r4"]
    assert order("state") == ["r0", "r2", "r4", "r1", "r3"]
    assert order("-state") == ["r3", "r1", "r4", "r2", "r0"]
    page = store.query_runs(RunQuery(dag_id="etl", order_by="logical_date", limit=2, offset=2))
    assert ([r.run_id for r in page.items], page.total, page.has_more) == (["r4", "r1"], 5, True)
    last = store.query_runs(RunQuery(dag_id="etl", limit=2, offset=4))
    assert (len(last.items), last.has_more) == (1, False)
    assert store.query_runs(RunQuery(dag_id="etl", limit=0)).total == 5


def test_query_runs_rejects_unknown_order():
    with pytest.raises(ValueError, match="cannot order runs by 'color'"):
        RunQuery(order_by="color")


def test_count_active_runs(store):
    new_run(store, run_id="r1")
    new_run(store, run_id="r2", day=1)
    store.transition_run("etl", "r1", RunState.QUEUED, RunState.RUNNING)
    assert store.count_active_runs("etl") == 1


# --- task instances -----------------------------------------------------------------


def test_task_transitions_with_events_and_timestamps(store):
    new_run(store)
    running = move(store, "a", Q, RUN, try_number=1)
    assert (running.state, running.try_number, running.end_date) == (TaskState.RUNNING, 1, None)
    assert running.start_date is not None
    failed = move(store, "a", RUN, RETRY, error="boom")
    assert failed.error == "boom" and failed.end_date is not None and failed.duration_ms is not None
    move(store, "a", RETRY, Q)
    assert store.get_task_instance(key("a")).start_date is None
    move(store, "a", Q, RUN, try_number=2)
    done = move(store, "a", RUN, OK)
    assert (done.try_number, done.error) == (2, None)
    events = store.read_events(EventQuery(types=("task.state_changed",)))
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
    seq = store.event_bounds()[1]
    changes = [
        TaskChange(key("a"), TaskState.QUEUED, TaskState.RUNNING),
        TaskChange(key("b"), TaskState.RUNNING, TaskState.SUCCESS),  # loses
    ]
    with pytest.raises(Conflict):
        store.transition_tasks(changes)
    assert store.get_task_instance(key("a")).state is TaskState.QUEUED
    assert store.event_bounds()[1] == seq


def test_batch_transitions_are_atomic_and_ordered(store):
    new_run(store)
    changes = [TaskChange(key(t), TaskState.QUEUED, TaskState.RUNNING, try_number=1) for t in "abc"]
    assert [t.task_id for t in store.transition_tasks(changes)] == ["a", "b", "c"]
    seqs = [e.seq for e in store.read_events(EventQuery(types=("task.state_changed",)))]
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
        events = store.read_events(EventQuery(run_id=run_id, types=("task.state_changed",)))
        assert len(events) == 1


def test_task_instance_queries(store):
    new_run(store, run_id="old", day=0)
    new_run(store, run_id="new", day=1)
    move(store, "b", Q, RUN, run_id="old")
    move(store, "b", RUN, FAIL, run_id="old")
    history = store.query_task_instances(TaskInstanceQuery(dag_id="etl", task_id="b")).items
    assert [(t.run_id, t.state) for t in history] == [
        ("new", TaskState.QUEUED),
        ("old", TaskState.FAILED),
    ]
    failed = store.query_task_instances(TaskInstanceQuery(states=(TaskState.FAILED,)))
    assert [(t.run_id, t.task_id) for t in failed.items] == [("old", "b")] and failed.total == 1
    page = store.query_task_instances(
        TaskInstanceQuery(run_id="old", dag_id="etl", limit=2, offset=1)
    )
    assert [t.task_id for t in page.items] == ["b", "c"] and page.total == 3
    with pytest.raises(NotFound):
        store.get_task_instance(key("a", run_id="zz"))


# --- XCom ---------------------------------------------------------------------------


def test_xcom_set_get_list_delete(store):
    new_run(store)
    entry = store.set_xcom(key("a"), "return_value", {"rows": 3, "names": ["é", "x"]})
    assert entry.size_bytes == len('{"rows":3,"names":["é","x"]}'.encode())
    assert store.get_xcom(key("a"), "return_value").value == {"rows": 3, "names": ["é", "x"]}
    store.set_xcom(key("a"), "nothing", None)
    stored_null = store.get_xcom(key("a"), "nothing")
    assert stored_null is not None and stored_null.value is None
    assert store.get_xcom(key("a"), "absent") is None
    store.set_xcom(key("a"), "return_value", 7)
    assert [(e.key, e.value) for e in store.list_xcom(key("a"))] == [
        ("nothing", None),
        ("return_value", 7),
    ]
    assert store.delete_xcom(key("a"), "nothing") == 1
    assert store.delete_xcom(key("a"), "nothing") == 0
    store.set_xcom(key("a"), "other", "x")
    assert store.delete_xcom(key("a")) == 2
    assert store.list_xcom(key("a")) == []


def test_xcom_bad_input(store):
    new_run(store)
    with pytest.raises(InvalidRequest, match="XCom value 'v' is not JSON-serialisable"):
        store.set_xcom(key("a"), "v", {1, 2})
    with pytest.raises(InvalidRequest):
        store.set_xcom(key("a"), "v", float("nan"))
    assert store.get_xcom(key("a"), "v") is None
    with pytest.raises(NotFound):
        store.set_xcom(key("zz"), "v", 1)


# --- pools --------------------------------------------------------------------------


def test_pools(store):
    assert store.list_pools() == [Pool("default_pool", 16, "Default pool")]
    store.create_pool(Pool("db", 2, "database"))
    with pytest.raises(Conflict, match="pool 'db' already exists"):
        store.create_pool(Pool("db", 3))
    assert store.update_pool("db", slots=5).slots == 5
    assert store.update_pool("db", description="warehouse") == Pool("db", 5, "warehouse")
    assert [p.name for p in store.list_pools()] == ["db", "default_pool"]
    with pytest.raises(Conflict, match="default_pool cannot be deleted"):
        store.delete_pool("default_pool")
    store.delete_pool("db")
    with pytest.raises(NotFound, match="no pool 'db'"):
        store.get_pool("db")
    with pytest.raises(NotFound):
        store.update_pool("db", slots=1)
    changes = [e.payload["change"] for e in store.read_events(EventQuery(types=("pool.updated",)))]
    assert changes == ["created", "updated", "updated", "deleted"]


def test_pool_usage_counts_running_and_queued(store):
    new_run(store)
    move(store, "a", Q, RUN)
    usage = store.pool_usage()
    assert usage["default_pool"] == {TaskState.RUNNING: 1, TaskState.QUEUED: 2}


# --- logs ---------------------------------------------------------------------------


def test_logs_append_and_read_with_offsets(store):
    new_run(store)
    store.append_log(key("a"), 1, "line one\n")
    store.append_log(key("a"), 1, "línea dos\n")
    store.append_log(key("a"), 2, "second try\n")
    whole = store.read_log(key("a"), 1)
    assert whole.text == "line one\nlínea dos\n" and whole.size == len(whole.text.encode())
    assert (whole.offset, whole.next_offset, whole.truncated) == (0, whole.size, False)
    tail = store.read_log(key("a"), 1, offset=9)
    assert tail.text == "línea dos\n" and tail.offset == 9
    part = store.read_log(key("a"), 1, offset=0, limit=4)
    assert (part.text, part.next_offset) == ("line", 4)
    assert store.read_log(key("a"), 2).text == "second try\n"
    assert store.read_log(key("a"), 3).text == ""
    assert store.read_log(key("a"), 1, offset=whole.size).text == ""
    with pytest.raises(NotFound):
        store.read_log(key("zz"), 1)


def test_logs_are_capped_per_try(store):
    store.log_cap_bytes = 64
    new_run(store)
    for i in range(20):
        store.append_log(key("a"), 1, f"line {i:02d} of output\n")
    log = store.read_log(key("a"), 1)
    assert log.truncated is True
    assert log.text.startswith("line 00 of output\n")
    assert log.text.endswith("[log truncated: the cap for one try was reached]\n")
    assert log.text.count("truncated") == 1
    assert log.size <= 64 + 60


# --- heartbeats ---------------------------------------------------------------------


def test_heartbeats(store):
    first = store.heartbeat("sched-1", kind="scheduler", hostname="h", pid=1)
    second = store.heartbeat("sched-1", kind="scheduler", hostname="h", pid=1)
    store.heartbeat("api-1", kind="api", hostname="h", pid=2)
    beats = store.list_heartbeats("scheduler")
    assert [b.component_id for b in beats] == ["sched-1"]
    assert beats[0].last_heartbeat >= first.last_heartbeat
    assert second.last_heartbeat >= first.last_heartbeat
    assert len(store.list_heartbeats()) == 2


# --- event log ----------------------------------------------------------------------


def test_event_filters_limits_and_bounds(store):
    assert store.event_bounds() == (0, 0)
    new_run(store, run_id="r1")
    new_run(store, run_id="r2", day=1, dag_id="other")
    move(store, "a", Q, RUN)
    store.append_event("custom.note", {"text": "hi"}, dag_id="etl")
    everything = store.read_events(EventQuery())
    assert [e.seq for e in everything] == [1, 2, 3, 4]
    assert [e.seq for e in store.read_events(EventQuery(after_seq=2))] == [3, 4]
    assert [e.seq for e in store.read_events(EventQuery(dag_id="etl"))] == [1, 3, 4]
    assert [e.seq for e in store.read_events(EventQuery(run_id="r2"))] == [2]
    assert [e.seq for e in store.read_events(EventQuery(task_id="a"))] == [3]
    assert [
        e.seq for e in store.read_events(EventQuery(types=("custom.note", "run.state_changed")))
    ] == [1, 2, 4]
    assert [e.seq for e in store.read_events(EventQuery(limit=2))] == [1, 2]
    assert [
        e.seq for e in store.read_events(EventQuery(dag_id="etl", types=("run.state_changed",)))
    ] == [1]
    assert store.event_bounds() == (1, 4)
    assert store.trim_events(3) == 2
    assert store.event_bounds() == (3, 4)
    assert [e.seq for e in store.read_events(EventQuery())] == [3, 4]
    assert store.read_events(EventQuery(after_seq=4)) == []


def test_listeners_see_events_after_commit(store):
    seen: list[int] = []
    store.add_listener(lambda events: seen.extend(e.seq for e in events))
    new_run(store)
    move(store, "a", Q, RUN)
    with pytest.raises(Conflict):
        move(store, "b", RUN, OK)
    assert seen == [1, 2]


def test_wait_for_events_wakes_on_a_new_event(store):
    assert store.wait_for_events(0, timeout=0.05) is False
    timer = threading.Timer(0.2, lambda: store.append_event("ping", {}))
    timer.start()
    assert store.wait_for_events(0, timeout=10) is True
    timer.join()
    assert store.wait_for_events(1, timeout=0.05) is False


def test_import_errors_are_replaced_as_a_whole(store):
    from pipeline_core.store.types import ImportError_

    first = ImportError_("b.yaml", ({"message": "bad", "line": 3, "path": "tasks.a"},), BASE)
    second = ImportError_("a.py", ({"message": "SyntaxError", "line": 1, "path": ""},), BASE)
    store.replace_import_errors([first, second])
    assert [(e.filename, e.issues[0]["line"]) for e in store.list_import_errors()] == [
        ("a.py", 1),
        ("b.yaml", 3),
    ]
    assert store.list_import_errors()[1].seen_at == BASE
    store.replace_import_errors([second])
    assert [e.filename for e in store.list_import_errors()] == ["a.py"]
    store.replace_import_errors([])
    assert store.list_import_errors() == []


class FakeClock:
    def __init__(self) -> None:
        self.now = BASE

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def finished_run(store, clock, run_id, day, seconds, outcome=RunState.SUCCESS):  # type: ignore[no-untyped-def]
    new_run(store, run_id=run_id, day=day, tasks=("a",))
    store.transition_run("etl", run_id, RunState.QUEUED, RunState.RUNNING)
    clock.advance(seconds=seconds)
    store.transition_run("etl", run_id, RunState.RUNNING, outcome)


def test_run_stats_with_reference_percentiles(store):
    clock = store.clock = FakeClock()
    durations = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]  # seconds
    for i, seconds in enumerate(durations):
        finished_run(
            store, clock, f"r{i}", i, seconds, RunState.FAILED if i % 5 == 0 else RunState.SUCCESS
        )
    new_run(store, run_id="queued", day=30, tasks=("a",))
    stats = store.run_stats("etl")
    assert stats.total == 21
    assert stats.by_state == {"success": 16, "failed": 4, "queued": 1}
    assert stats.success_rate == 16 / 20
    assert (stats.duration_min, stats.duration_max) == (1000, 9000)
    assert stats.duration_avg == pytest.approx(sum(durations) * 1000 / 20)
    ordered = sorted(durations)  # nearest rank: ceil(q/100 * n)-th smallest
    assert stats.duration_p50 == ordered[9] * 1000
    assert stats.duration_p90 == ordered[17] * 1000
    assert stats.duration_p99 == ordered[19] * 1000
    window = store.run_stats(
        "etl", since=BASE + timedelta(days=10), until=BASE + timedelta(days=12)
    )
    assert window.total == 3 and window.by_state == {"failed": 1, "success": 2}


def test_run_stats_of_an_empty_history(store):
    stats = store.run_stats("nothing")
    assert (stats.total, stats.by_state, stats.success_rate) == (0, {}, 0.0)
    assert stats.duration_avg is None and stats.duration_p99 is None
    assert store.task_stats("nothing") == []


def test_task_stats(store):
    clock = store.clock = FakeClock()
    for i in range(4):
        new_run(store, run_id=f"r{i}", day=i, tasks=("a", "b"))
        move(store, "a", Q, RUN, run_id=f"r{i}", try_number=1)
        clock.advance(seconds=2)
        if i == 3:
            move(store, "a", RUN, RETRY, run_id=f"r{i}")
            move(store, "a", RETRY, Q, run_id=f"r{i}")
            move(store, "a", Q, RUN, run_id=f"r{i}", try_number=2)
            clock.advance(seconds=2)
            move(store, "a", RUN, FAIL, run_id=f"r{i}")
        else:
            move(store, "a", RUN, OK, run_id=f"r{i}")
    [a] = store.task_stats("etl")  # b never started
    assert (a.task_id, a.runs) == ("a", 4)
    assert a.avg_duration_ms == pytest.approx(2000)
    assert (a.failure_rate, a.retry_rate) == (0.25, 0.25)
    assert a.last_success == BASE + timedelta(seconds=6)
    assert a.last_failure == BASE + timedelta(seconds=10)


def test_whole_history_task_stats_agree_with_the_rows(store):
    """Whole-history task statistics come from running totals on the SQL backends; any
    write — new runs, retries, failures, deleted and pruned runs — keeps them equal to what
    the task instances themselves say (a window spanning everything reads the rows)."""
    clock = store.clock = FakeClock()
    for i in range(6):
        new_run(store, run_id=f"r{i}", day=i, tasks=("a", "b", "c"))
        move(store, "a", Q, RUN, run_id=f"r{i}", try_number=1)
        clock.advance(seconds=1 + i)
        if i % 3 == 0:
            move(store, "a", RUN, RETRY, run_id=f"r{i}")
            move(store, "a", RETRY, Q, run_id=f"r{i}")
            move(store, "a", Q, RUN, run_id=f"r{i}", try_number=2)
            clock.advance(seconds=1)
        move(store, "a", RUN, FAIL if i % 2 else OK, run_id=f"r{i}")
        if i % 2:
            move(store, "b", Q, RUN, run_id=f"r{i}", try_number=1)  # still running
        store.transition_run("etl", f"r{i}", RunState.QUEUED, RunState.RUNNING)
        store.transition_run("etl", f"r{i}", RunState.RUNNING, RunState.FAILED)
    everything = {"since": BASE - timedelta(days=1), "until": BASE + timedelta(days=99)}

    def agree() -> None:
        assert store.task_stats("etl") == store.task_stats("etl", **everything)

    agree()
    assert [t.task_id for t in store.task_stats("etl")] == ["a", "b"]
    store.delete_run("etl", "r1")
    agree()
    store.prune_runs("etl", BASE + timedelta(days=3))
    agree()
    assert store.task_stats("etl")[0].runs == 3
    for i in range(3, 6):
        store.delete_run("etl", f"r{i}")
    assert store.task_stats("etl") == []


def test_latest_runs_in_one_call(store):
    new_run(store, run_id="old", day=0)
    new_run(store, run_id="new", day=5)
    new_run(store, run_id="tie-first", day=5, dag_id="b")
    new_run(store, run_id="tie-second", day=5, dag_id="b")
    for dag_id in ("etl", "b", "empty"):
        store.upsert_dag(DagRecord(dag_id, definition={"tasks": []}))
    latest = store.latest_runs(["etl", "b", "empty"])
    assert {k: v.run_id for k, v in latest.items()} == {"etl": "new", "b": "tie-second"}
    assert store.latest_runs([]) == {}
    assert all(d.definition is None for d in store.list_dags().items)  # listings skip definitions
    assert store.get_dag("etl").definition == {"tasks": []}
