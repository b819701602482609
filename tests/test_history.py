from datetime import timedelta

import pytest

from pipeline_core.errors import NotFound
from pipeline_core.history import History
from pipeline_core.state import RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import RunQuery
from tests.store.helpers import BASE, key, move, new_run


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    created = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    yield created
    created.close()


def test_timeline_orders_state_changes_and_xcom_pushes(store):
    history = History(store)
    new_run(store, tasks=("a", "b"))
    move(store, "a", "queued", "running", try_number=1)
    store.task_data.set_xcom(key("a"), "return_value", {"rows": 3})
    move(store, "a", "running", "success")
    timeline = history.timeline("etl", "r1")
    kinds = [(item["type"], item.get("task_id"), item.get("new_state")) for item in timeline]
    assert kinds == [
        ("run.state_changed", None, "queued"),
        ("task.state_changed", "a", "running"),
        ("xcom.pushed", "a", None),
        ("task.state_changed", "a", "success"),
    ]
    with pytest.raises(NotFound):
        history.timeline("etl", "nope")


def test_pages_history_recent_and_delete(store):
    history = History(store)
    for day in range(5):
        new_run(store, run_id=f"r{day}", day=day, tasks=("a",))
        store.runs.transition_run("etl", f"r{day}", RunState.QUEUED, RunState.CANCELLED)
    new_run(store, dag_id="other", run_id="o", day=10, tasks=("a",))
    assert [r.run_id for r in history.recent_runs(2)] == ["o", "r4"]
    page = history.runs(RunQuery(dag_id="etl", limit=2, offset=1))
    assert (page.total, [r.run_id for r in page.items]) == (5, ["r3", "r2"])
    assert [t.run_id for t in history.task_history("etl", "a", limit=2).items] == ["r4", "r3"]
    assert [t.task_id for t in history.task_instances("etl", "r1")] == ["a"]


def test_dag_stats_shape_and_empty_history(store):
    history = History(store)
    empty = history.dag_stats("etl")
    assert empty["runs"] == {
        "total": 0,
        "by_state": {},
        "success_rate": 0.0,
        "duration_ms": {
            "avg": None,
            "min": None,
            "max": None,
            "p50": None,
            "p90": None,
            "p99": None,
        },
    }
    assert empty["tasks"] == []
    new_run(store, tasks=("a",))
    move(store, "a", "queued", "running", try_number=1)
    move(store, "a", "running", "success")
    stats = history.dag_stats("etl", since=BASE - timedelta(days=1))
    assert stats["runs"]["total"] == 1
    assert stats["tasks"][0]["task_id"] == "a" and stats["tasks"][0]["last_success"].endswith("Z")
    assert stats["since"].endswith("Z")
