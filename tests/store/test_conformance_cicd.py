"""The store contract over every backend: idempotency keys held with their run, notes, and
backfills with their dates."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import DagRun, IdempotencyKey, TaskSpec
from pipeline_core.state import RunState
from pipeline_core.store.types import EventQuery
from tests.store.helpers import BASE, new_run


def _keyed(store, run_id, key="k", fingerprint="f", ttl=3600.0):  # type: ignore[no-untyped-def]
    run = DagRun("etl", run_id, RunState.QUEUED, "manual", BASE)
    return store.runs.create_run(
        run, [TaskSpec("a")], idempotency=IdempotencyKey(key, fingerprint, ttl)
    )


def test_a_key_is_held_by_the_run_it_created(store):
    _keyed(store, "r1")
    held = store.runs.find_idempotency_key("etl", "k")
    assert (held.run_id, held.fingerprint) == ("r1", "f")
    assert held.expires_at - held.created_at == timedelta(hours=1)
    with pytest.raises(Conflict, match="held by run 'r1'"):
        _keyed(store, "r2")
    with pytest.raises(NotFound):
        store.runs.get_run("etl", "r2")  # refused whole: no run without its key
    assert store.runs.find_idempotency_key("other_dag", "k") is None
    assert store.runs.find_idempotency_key("etl", "other") is None


def test_a_key_goes_with_its_run_and_when_it_expires(store):
    _keyed(store, "r1")
    store.runs.delete_run("etl", "r1")
    assert store.runs.find_idempotency_key("etl", "k") is None
    _keyed(store, "r2", ttl=60)
    later = store.clock() + timedelta(seconds=61)
    store.clock = lambda: later
    assert store.runs.find_idempotency_key("etl", "k") is None
    _keyed(store, "r3")  # an expired key is free again
    assert store.runs.find_idempotency_key("etl", "k").run_id == "r3"


def test_concurrent_creations_with_one_key_make_one_run(store):
    outcomes: list[str] = []

    def create(i: int) -> None:
        try:
            _keyed(store, f"r{i}")
            outcomes.append("created")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] + ["refused"] * 9
    assert store.runs.find_idempotency_key("etl", "k") is not None


def test_a_note_is_set_with_its_event(store):
    new_run(store)
    assert store.runs.set_run_note("etl", "r1", "checked").note == "checked"
    assert store.runs.get_run("etl", "r1").note == "checked"
    store.runs.set_run_note("etl", "r1", "checked")  # no change, no event
    assert store.runs.set_run_note("etl", "r1", None).note is None
    events = store.events.read_events(EventQuery(types=("run.updated",)))
    assert [e.payload for e in events] == [
        {"note": "checked", "previous_note": None},
        {"note": None, "previous_note": "checked"},
    ]
    with pytest.raises(NotFound):
        store.runs.set_run_note("etl", "ghost", "x")


def test_a_backfill_keeps_its_dates_and_their_runs(store):
    dates = [BASE + timedelta(days=i) for i in range(3)]
    made = store.backfills.create_backfill(
        "etl", dates[0], dates[-1], reprocess="none", max_active_runs=2, dates=dates
    )
    assert (made.state, made.max_active_runs, made.waiting, made.active) == ("running", 2, dates, 0)
    new_run(store, run_id="b0", day=0, run_type="backfill")
    store.backfills.set_backfill_run(made.id, dates[0], "b0")
    with pytest.raises(Conflict):
        store.backfills.set_backfill_run(made.id, dates[0], "b0")
    again = store.backfills.get_backfill(made.id)
    assert again.waiting == dates[1:] and again.active == 1
    assert (again.dates[0].run_id, again.dates[0].run_state) == ("b0", "queued")
    assert [b.id for b in store.backfills.list_backfills("etl", "running")] == [made.id]
    assert store.backfills.list_backfills("other") == []
    ended = store.backfills.end_backfill(made.id, "cancelled")
    assert ended.state == "cancelled" and ended.completed_at is not None
    with pytest.raises(Conflict, match="cancelled already"):
        store.backfills.end_backfill(made.id, "completed")
    with pytest.raises(NotFound):
        store.backfills.get_backfill(made.id + 100)
    events = store.events.read_events(EventQuery(types=("backfill.updated",)))
    assert [e.payload["change"] for e in events] == ["created", "cancelled"]
