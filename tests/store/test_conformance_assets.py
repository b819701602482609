"""Assets on every backend: what a DAG's definition names, updates queued for each consumer
in the transaction that records them, consumed by the run they start in its own transaction
— once, whoever races for them — and a task's success recording its outlets with its extra."""

from __future__ import annotations

import threading

import pytest

from pipeline_core.errors import Conflict, InvalidRequest
from pipeline_core.model import TaskChange, TaskSpec, UpdateAssets, new_run
from pipeline_core.state import TaskState
from pipeline_core.store.types import EventQuery
from tests.store.helpers import BASE, dag, key, move
from tests.store.helpers import new_run as stored_run


def consumer(store, dag_id: str, condition: str) -> None:  # type: ignore[no-untyped-def]
    definition = {"dag_id": dag_id, "assets": {"assets": condition, "collapse": False},
                  "tasks": [{"task_id": "t", "outlets": ["out://" + dag_id, "s3://{{ ds }}"]}]}  # fmt: skip
    store.dags.upsert_dag(dag(dag_id, definition=definition, definition_hash=dag_id))


def test_an_update_is_queued_for_every_consumer_of_its_asset(store) -> None:  # type: ignore[no-untyped-def]
    consumer(store, "c1", "orders & refunds")
    consumer(store, "c2", "orders | other")
    update, replayed = store.assets.post_update("orders", {"rows": 3})
    assert not replayed and update.extra == {"rows": 3} and update.dag_id is None
    store.assets.post_update("refunds")
    assert [u.uri for u in store.assets.waiting("c1")] == ["orders", "refunds"]
    assert [u.uri for u in store.assets.waiting("c2")] == ["orders"]
    assert store.assets.consumers_waiting() == ["c1", "c2"]
    [event, _] = store.events.read_events(EventQuery(types=("asset.updated",)))
    assert event.seq == update.id and event.payload["uri"] == "orders"
    infos = {a.uri: a for a in store.assets.list_assets()}
    assert infos["orders"].consumers == ["c1", "c2"] and infos["orders"].updates == 1
    assert infos["out://c1"].producers == ["c1.t"] and "s3://{{ ds }}" not in infos
    assert store.assets.list_updates("orders").total == 1
    assert [u.uri for u in store.assets.list_updates().items] == ["refunds", "orders"]


def test_a_repeated_key_answers_the_first_update(store) -> None:  # type: ignore[no-untyped-def]
    consumer(store, "c1", "orders")
    first, _ = store.assets.post_update("orders", key="k-1")
    again, replayed = store.assets.post_update("orders", {"other": 1}, key="k-1")
    assert replayed and again == first
    assert len(store.assets.waiting("c1")) == 1
    with pytest.raises(InvalidRequest):
        store.assets.post_update("a b")


def test_a_run_consumes_its_updates_once_whoever_races_for_them(store) -> None:  # type: ignore[no-untyped-def]
    consumer(store, "c1", "orders")
    ids = tuple(store.assets.post_update("orders")[0].id for _ in range(2))
    results: list[object] = []

    def create(run_id: str) -> None:
        write = new_run("c1", (TaskSpec("t"),), now=BASE, run_id=run_id, consumes=ids)
        try:
            store.runs.apply([write])
            results.append(run_id)
        except Conflict as exc:
            results.append(exc)

    threads = [threading.Thread(target=create, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = [r for r in results if isinstance(r, str)]
    assert len(made) == 1 and store.assets.waiting("c1") == []
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, str))


def test_a_task_success_records_its_outlets_with_its_extra(store) -> None:  # type: ignore[no-untyped-def]
    consumer(store, "c1", "s3://b/x")
    stored_run(store)
    move(store, "a", TaskState.QUEUED, TaskState.RUNNING, try_number=1)
    store.task_data.set_xcom(key("a"), "asset_extra", {"files": 2})
    store.runs.apply([
        TaskChange(key("a"), TaskState.RUNNING, TaskState.SUCCESS),
        UpdateAssets(key("a"), ("s3://b/x", "s3://b/x", "db://w/y")),
    ])  # fmt: skip
    waiting = store.assets.waiting("c1")
    assert [(u.uri, u.extra, u.task_id) for u in waiting] == [("s3://b/x", {"files": 2}, "a")]
    (other,) = store.assets.list_updates("db://w/y").items
    assert (other.dag_id, other.run_id, other.task_id, other.map_index) == ("etl", "r1", "a", -1)
    assert store.assets.list_updates().total == 2  # a repeated outlet counts once


def test_redefining_a_dag_changes_what_it_consumes(store) -> None:  # type: ignore[no-untyped-def]
    consumer(store, "c1", "orders")
    consumer(store, "c1", "refunds")
    store.assets.post_update("orders")
    assert store.assets.waiting("c1") == []
    store.assets.post_update("refunds")
    assert [u.uri for u in store.assets.waiting("c1")] == ["refunds"]
