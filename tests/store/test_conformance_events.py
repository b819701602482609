"""The store contract over every backend: the event log, import errors and statistics."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from pipeline_core.errors import Conflict
from pipeline_core.state import RunState
from pipeline_core.store.types import DagRecord, EventQuery
from tests.store.helpers import BASE, move, new_run

Q, RUN, OK, FAIL, RETRY = "queued", "running", "success", "failed", "up_for_retry"


# --- event log ----------------------------------------------------------------------


def test_event_filters_limits_and_bounds(store):
    assert store.events.event_bounds() == (0, 0)
    new_run(store, run_id="r1")
    new_run(store, run_id="r2", day=1, dag_id="other")
    move(store, "a", Q, RUN)
    store.events.append_event("custom.note", {"text": "hi"}, dag_id="etl")
    everything = store.events.read_events(EventQuery())
    assert [e.seq for e in everything] == [1, 2, 3, 4]
    assert [e.seq for e in store.events.read_events(EventQuery(after_seq=2))] == [3, 4]
    assert [e.seq for e in store.events.read_events(EventQuery(dag_id="etl"))] == [1, 3, 4]
    assert [e.seq for e in store.events.read_events(EventQuery(run_id="r2"))] == [2]
    assert [e.seq for e in store.events.read_events(EventQuery(task_id="a"))] == [3]
    assert [
        e.seq
        for e in store.events.read_events(EventQuery(types=("custom.note", "run.state_changed")))
    ] == [1, 2, 4]
    assert [e.seq for e in store.events.read_events(EventQuery(limit=2))] == [1, 2]
    assert [
        e.seq
        for e in store.events.read_events(EventQuery(dag_id="etl", types=("run.state_changed",)))
    ] == [1]
    assert store.events.event_bounds() == (1, 4)
    assert store.events.trim_events(3) == 2
    assert store.events.event_bounds() == (3, 4)
    assert [e.seq for e in store.events.read_events(EventQuery())] == [3, 4]
    assert store.events.read_events(EventQuery(after_seq=4)) == []


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
    timer = threading.Timer(0.2, lambda: store.events.append_event("ping", {}))
    timer.start()
    assert store.wait_for_events(0, timeout=10) is True
    timer.join()
    assert store.wait_for_events(1, timeout=0.05) is False


def test_import_errors_are_replaced_as_a_whole(store):
    from pipeline_core.store.types import ImportError_

    first = ImportError_("b.yaml", ({"message": "bad", "line": 3, "path": "tasks.a"},), BASE)
    second = ImportError_("a.py", ({"message": "SyntaxError", "line": 1, "path": ""},), BASE)
    store.dags.replace_import_errors([first, second])
    assert [(e.filename, e.issues[0]["line"]) for e in store.dags.list_import_errors()] == [
        ("a.py", 1),
        ("b.yaml", 3),
    ]
    assert store.dags.list_import_errors()[1].seen_at == BASE
    store.dags.replace_import_errors([second])
    assert [e.filename for e in store.dags.list_import_errors()] == ["a.py"]
    store.dags.replace_import_errors([])
    assert store.dags.list_import_errors() == []


class FakeClock:
    def __init__(self) -> None:
        self.now = BASE

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def finished_run(store, clock, run_id, day, seconds, outcome=RunState.SUCCESS):  # type: ignore[no-untyped-def]
    new_run(store, run_id=run_id, day=day, tasks=("a",))
    store.runs.transition_run("etl", run_id, RunState.QUEUED, RunState.RUNNING)
    clock.advance(seconds=seconds)
    store.runs.transition_run("etl", run_id, RunState.RUNNING, outcome)


def test_run_stats_with_reference_percentiles(store):
    clock = store.clock = FakeClock()
    durations = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4]  # seconds
    for i, seconds in enumerate(durations):
        finished_run(
            store, clock, f"r{i}", i, seconds, RunState.FAILED if i % 5 == 0 else RunState.SUCCESS
        )
    new_run(store, run_id="queued", day=30, tasks=("a",))
    stats = store.runs.run_stats("etl")
    assert stats.total == 21
    assert stats.by_state == {"success": 16, "failed": 4, "queued": 1}
    assert stats.success_rate == 16 / 20
    assert (stats.duration_min, stats.duration_max) == (1000, 9000)
    assert stats.duration_avg == pytest.approx(sum(durations) * 1000 / 20)
    ordered = sorted(durations)  # nearest rank: ceil(q/100 * n)-th smallest
    assert stats.duration_p50 == ordered[9] * 1000
    assert stats.duration_p90 == ordered[17] * 1000
    assert stats.duration_p99 == ordered[19] * 1000
    window = store.runs.run_stats(
        "etl", since=BASE + timedelta(days=10), until=BASE + timedelta(days=12)
    )
    assert window.total == 3 and window.by_state == {"failed": 1, "success": 2}


def test_run_stats_of_an_empty_history(store):
    stats = store.runs.run_stats("nothing")
    assert (stats.total, stats.by_state, stats.success_rate) == (0, {}, 0.0)
    assert stats.duration_avg is None and stats.duration_p99 is None
    assert store.tasks.task_stats("nothing") == []


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
    [a] = store.tasks.task_stats("etl")  # b never started
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
        store.runs.transition_run("etl", f"r{i}", RunState.QUEUED, RunState.RUNNING)
        store.runs.transition_run("etl", f"r{i}", RunState.RUNNING, RunState.FAILED)
    everything = {"since": BASE - timedelta(days=1), "until": BASE + timedelta(days=99)}

    def agree() -> None:
        assert store.tasks.task_stats("etl") == store.tasks.task_stats("etl", **everything)

    agree()
    assert [t.task_id for t in store.tasks.task_stats("etl")] == ["a", "b"]
    store.runs.delete_run("etl", "r1")
    agree()
    store.runs.delete_run("etl", "r0")
    store.runs.delete_run("etl", "r2")
    agree()
    assert store.tasks.task_stats("etl")[0].runs == 3
    for i in range(3, 6):
        store.runs.delete_run("etl", f"r{i}")
    assert store.tasks.task_stats("etl") == []


def test_latest_runs_in_one_call(store):
    new_run(store, run_id="old", day=0)
    new_run(store, run_id="new", day=5)
    new_run(store, run_id="tie-first", day=5, dag_id="b")
    new_run(store, run_id="tie-second", day=5, dag_id="b")
    for dag_id in ("etl", "b", "empty"):
        store.dags.upsert_dag(DagRecord(dag_id, definition={"tasks": []}))
    latest = store.runs.latest_runs(["etl", "b", "empty"])
    assert {k: v.run_id for k, v in latest.items()} == {"etl": "new", "b": "tie-second"}
    assert store.runs.latest_runs([]) == {}
    assert [d.definition for d in store.dags.list_dags().items] == [{}, {}, {}]
    assert store.dags.get_dag("etl").definition == {"tasks": []}


def test_a_listing_carries_only_what_it_shows_of_each_definition(store):
    assets = {"condition": "s3://a & s3://b", "assets": ["s3://a", "s3://b"], "collapse": True}
    whole = {"tasks": [{"task_id": "x"}], "start_date": "2030-01-01T00:00:00Z",
             "end_date": None, "assets": assets, "description": "long text " * 100}  # fmt: skip
    store.dags.upsert_dag(DagRecord("etl", definition=whole))
    store.dags.upsert_dag(DagRecord("bare"))
    listed = {d.dag_id: d.definition for d in store.dags.list_dags().items}
    shown = {"start_date": "2030-01-01T00:00:00Z", "end_date": None, "assets": assets}
    assert listed == {"etl": shown, "bare": None}
    assert store.dags.get_dag("etl").definition == whole
    store.dags.upsert_dag(DagRecord("etl", definition={"tasks": []}))  # changed: listed too
    assert store.dags.list_dags().items[1].definition == {}
