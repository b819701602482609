"""One behavioural contract, checked against every backend (memory, SQLite, PostgreSQL):
DAGs and runs. The other parts are test_conformance_tasks.py and test_conformance_events.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline_core.errors import Conflict, InvalidRequest, InvalidTransition, NotFound
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import DagRecord, EventQuery, RunQuery, TaskInstanceQuery
from tests.store.helpers import BASE, dag, key, new_run

Q, RUN, OK, FAIL, RETRY = "queued", "running", "success", "failed", "up_for_retry"


# --- DAGs ---------------------------------------------------------------------------


def test_upsert_get_and_list_dags(store):
    store.dags.upsert_dag(dag("etl", tags=("etl", "prod"), schedule="@daily", task_count=3))
    store.dags.upsert_dag(dag("report", tags=("report",), description="weekly"))
    store.dags.upsert_dag(dag("ETL_backfill", tags=("etl",), is_paused=True))
    got = store.dags.get_dag("etl")
    assert (got.schedule, got.tags, got.task_count, got.is_paused) == (
        "@daily",
        ("etl", "prod"),
        3,
        False,
    )
    assert [d.dag_id for d in store.dags.list_dags().items] == ["ETL_backfill", "etl", "report"]
    assert [d.dag_id for d in store.dags.list_dags(tags=["etl"]).items] == ["ETL_backfill", "etl"]
    assert [d.dag_id for d in store.dags.list_dags(tags=["report", "prod"]).items] == [
        "etl",
        "report",
    ]
    assert [d.dag_id for d in store.dags.list_dags(is_paused=True).items] == ["ETL_backfill"]
    assert [d.dag_id for d in store.dags.list_dags(dag_id_pattern="etl").items] == [
        "ETL_backfill",
        "etl",
    ]
    assert [
        d.dag_id for d in store.dags.list_dags(dag_id_pattern="etl", is_paused=False).items
    ] == ["etl"]
    page = store.dags.list_dags(limit=2, offset=1)
    assert (page.total, [d.dag_id for d in page.items], page.has_more) == (
        3,
        ["etl", "report"],
        False,
    )
    assert store.dags.list_dags(dag_id_pattern="%").total == 0
    assert store.dags.list_dags(dag_id_pattern="_").total == 1


def test_dag_definition_round_trips(store):
    definition = {"tasks": [{"task_id": "a", "depends_on": []}], "nested": {"x": [1, 2.5, None]}}
    store.dags.upsert_dag(dag("etl", definition=definition, definition_hash="abc"))
    assert store.dags.get_dag("etl").definition == definition


def test_upsert_keeps_pause_state_and_only_emits_on_change(store):
    store.dags.upsert_dag(dag("etl"))
    store.dags.set_paused("etl", True)
    store.dags.upsert_dag(dag("etl", description="changed", is_paused=False))
    assert store.dags.get_dag("etl").is_paused is True
    before = store.events.event_bounds()[1]
    store.dags.upsert_dag(dag("etl", description="changed"))
    assert store.events.event_bounds()[1] == before
    changes = [
        e.payload["change"] for e in store.events.read_events(EventQuery(types=("dag.updated",)))
    ]
    assert changes == ["created", "paused", "updated"]


def test_set_paused_and_missing_dag(store):
    store.dags.upsert_dag(dag("etl"))
    assert store.dags.set_paused("etl", True).is_paused is True
    assert store.dags.set_paused("etl", False).is_paused is False
    with pytest.raises(NotFound, match="no DAG 'nope'"):
        store.dags.get_dag("nope")
    with pytest.raises(NotFound):
        store.dags.set_paused("nope", True)


def test_deactivate_missing_dags(store):
    for dag_id in ("a", "b", "c"):
        store.dags.upsert_dag(dag(dag_id))
    assert store.dags.deactivate_missing_dags(["a"]) == ["b", "c"]
    assert [d.dag_id for d in store.dags.list_dags(is_active=True).items] == ["a"]
    assert store.dags.deactivate_missing_dags(["a"]) == []


def test_not_json_is_refused_before_writing(store):
    with pytest.raises(InvalidRequest, match="not JSON-serialisable"):
        store.dags.upsert_dag(DagRecord("etl", definition={"x": object()}))
    with pytest.raises(NotFound):
        store.dags.get_dag("etl")
    with pytest.raises(InvalidRequest, match="conf"):
        new_run(store, conf={"when": object()})
    with pytest.raises(NotFound):
        store.runs.get_run("etl", "r1")
    assert store.events.event_bounds() == (0, 0)


# --- runs ---------------------------------------------------------------------------


def test_create_run_with_its_task_instances(store):
    run = new_run(store, conf={"x": 1}, note="hello")
    assert run.state is RunState.QUEUED and run.queued_at is not None
    got = store.runs.get_run("etl", "r1")
    assert (got.conf, got.note, got.logical_date) == ({"x": 1}, "hello", BASE)
    tis = store.tasks.query_task_instances(TaskInstanceQuery(dag_id="etl", run_id="r1")).items
    assert [(t.task_id, t.state, t.try_number, t.max_tries) for t in tis] == [
        ("a", TaskState.QUEUED, 0, 2),
        ("b", TaskState.QUEUED, 0, 2),
        ("c", TaskState.QUEUED, 0, 2),
    ]
    [event] = store.events.read_events(EventQuery())
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
    assert store.runs.query_runs(RunQuery()).total == 3


def test_run_transitions_stamp_dates(store):
    new_run(store)
    running = store.runs.transition_run("etl", "r1", RunState.QUEUED, RunState.RUNNING)
    assert running.start_date is not None and running.end_date is None
    done = store.runs.transition_run("etl", "r1", RunState.RUNNING, RunState.SUCCESS)
    assert done.end_date is not None and done.duration_ms is not None and done.duration_ms >= 0
    again = store.runs.transition_run(
        "etl", "r1", RunState.SUCCESS, RunState.RUNNING, reason="retry"
    )
    assert again.end_date is None and again.start_date == running.start_date
    events = store.events.read_events(EventQuery(types=("run.state_changed",)))
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
        store.runs.transition_run("etl", "r1", RunState.QUEUED, RunState.SUCCESS)
    with pytest.raises(Conflict, match="is 'queued', not 'running'"):
        store.runs.transition_run("etl", "r1", RunState.RUNNING, RunState.SUCCESS)
    with pytest.raises(NotFound, match="no run 'zz'"):
        store.runs.transition_run("etl", "zz", RunState.QUEUED, RunState.RUNNING)
    assert store.runs.get_run("etl", "r1").state is RunState.QUEUED


def test_delete_run_removes_everything_of_it(store):
    new_run(store)
    store.task_data.set_xcom(key("a"), "return_value", 1)
    store.task_data.append_log(key("a"), 1, "hello")
    store.runs.delete_run("etl", "r1")
    with pytest.raises(NotFound):
        store.runs.get_run("etl", "r1")
    with pytest.raises(NotFound):
        store.tasks.get_task_instance(key("a"))
    assert store.task_data.get_xcom(key("a"), "return_value") is None
    with pytest.raises(NotFound):
        store.runs.delete_run("etl", "r1")
    new_run(store)  # the ids are free again
    assert store.task_data.read_log(key("a"), 1).text == ""


def _finish(store, run_id, seconds_apart=False):  # type: ignore[no-untyped-def]
    store.runs.transition_run("etl", run_id, RunState.QUEUED, RunState.RUNNING)
    store.runs.transition_run("etl", run_id, RunState.RUNNING, RunState.SUCCESS)


def test_query_runs_filters_combined(store):
    for day in range(6):
        new_run(store, run_id=f"r{day}", day=day, run_type="scheduled" if day % 2 else "manual")
    for day in (1, 2, 3):
        _finish(store, f"r{day}")
    store.runs.transition_run("etl", "r4", RunState.QUEUED, RunState.CANCELLED)
    new_run(store, dag_id="other", run_id="x", day=2)

    def ids(**filters):  # type: ignore[no-untyped-def]
        return sorted(r.run_id for r in store.runs.query_runs(RunQuery(**filters)).items)

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
    started = store.runs.get_run("etl", "r2").start_date
    assert ids(dag_id="etl", start_date_gte=started) == ["r2", "r3"]
    assert ids(dag_id="etl", end_date_lte=store.runs.get_run("etl", "r1").end_date) == ["r1"]
    assert ids(states=(RunState.FAILED,)) == []


def test_query_runs_order_ties_nulls_and_pages(store):
    for i in range(5):
        new_run(store, run_id=f"r{i}", day=i % 2)  # logical dates tie in pairs
    _finish(store, "r3")
    _finish(store, "r1")

    def order(order_by, **kw):  # type: ignore[no-untyped-def]
        return [
            r.run_id
            for r in store.runs.query_runs(RunQuery(dag_id="etl", order_by=order_by, **kw)).items
        ]

    assert order("logical_date") == ["r0", "r2", "r4", "r1", "r3"]
    assert order("-logical_date") == ["r3", "r1", "r4", "r2", "r0"]
    assert order("start_date") == ["r3", "r1", "r0", "r2", "r4"]  # NULLs last either way
    assert order("-start_date") == ["r1", "r3", "r4", "r2", "r0"]
    assert order("end_date")[:2] == ["r3", "r1"]
    assert order("duration")[2:] == ["r0", "r2", "r4"]
    assert order("state") == ["r0", "r2", "r4", "r1", "r3"]
    assert order("-state") == ["r3", "r1", "r4", "r2", "r0"]
    page = store.runs.query_runs(RunQuery(dag_id="etl", order_by="logical_date", limit=2, offset=2))
    assert ([r.run_id for r in page.items], page.total, page.has_more) == (["r4", "r1"], 5, True)
    last = store.runs.query_runs(RunQuery(dag_id="etl", limit=2, offset=4))
    assert (len(last.items), last.has_more) == (1, False)
    assert store.runs.query_runs(RunQuery(dag_id="etl", limit=0)).total == 5


def test_query_runs_rejects_unknown_order():
    with pytest.raises(ValueError, match="cannot order runs by 'color'"):
        RunQuery(order_by="color")


def test_count_active_runs(store):
    new_run(store, run_id="r1")
    new_run(store, run_id="r2", day=1)
    store.runs.transition_run("etl", "r1", RunState.QUEUED, RunState.RUNNING)
    assert store.runs.count_active_runs("etl") == 1


def test_a_runs_priority_is_stored(store) -> None:  # type: ignore[no-untyped-def]
    from pipeline_core.model import TaskSpec
    from pipeline_core.model import new_run as create

    made = [create("d", (TaskSpec("a"),), now=BASE, run_id="p", priority=7),
            create("d", (TaskSpec("a"),), now=BASE, run_id="z")]  # fmt: skip
    for write in made:  # PostgreSQL: a run with a priority takes the ordinary path
        store.runs.apply([write], now=BASE)
    assert store.runs.get_run("d", "p").priority == 7
    assert store.runs.get_run("d", "z").priority == 0


def test_dags_are_searched_by_id_or_description(store) -> None:  # type: ignore[no-untyped-def]
    store.dags.upsert_dag(dag("etl_orders", description="Loads ORDERS nightly"))
    store.dags.upsert_dag(dag("report", description="weekly 100%_sure"))
    store.dags.upsert_dag(dag("orders_sync"))
    found = store.dags.list_dags(search="orders")
    assert [d.dag_id for d in found.items] == ["etl_orders", "orders_sync"] and found.total == 2
    assert [d.dag_id for d in store.dags.list_dags(search="100%_").items] == ["report"]
    only = store.dags.list_dags(search="%").items  # a wildcard is only a character
    assert [d.dag_id for d in only] == ["report"]
    store.dags.upsert_dag(dag("zz", description="Übersicht der Läufe"))
    assert [d.dag_id for d in store.dags.list_dags(search="übersicht").items] == ["zz"]
    assert store.dags.list_dags(search="zzüber").total == 0  # not across id and description
    page = store.dags.list_dags(search="orders", limit=1, offset=1)
    assert ([d.dag_id for d in page.items], page.total) == (["orders_sync"], 2)
    past = store.dags.list_dags(search="orders", limit=1, offset=5)  # past the end: counted
    assert (past.items, past.total) == ([], 2)
    assert store.dags.list_dags(search="nothing like it").total == 0
