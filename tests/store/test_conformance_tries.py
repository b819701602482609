"""The store contract over every backend: claims and reports of tries on remote workers."""

from __future__ import annotations

import threading

from pipeline_core.store.types import EventQuery, TryReport
from tests.store.helpers import key, move, new_run

Q, RUN, OK = "queued", "running", "success"


def test_a_running_try_is_claimed_once_and_its_claim_is_seen_by_the_loser(store):
    new_run(store)
    move(store, "a", Q, RUN, try_number=1)
    won = store.tries.claim_try(key("a"), 1, "s1", "w1")
    assert won is not None and (won.worker_id, won.reported_at) == ("w1", None)
    lost = store.tries.claim_try(key("a"), 1, "s1", "w2")
    assert lost is not None and lost.worker_id == "w1"  # the holder, not the asker
    assert [c.worker_id for c in store.tries.list_claims()] == ["w1"]
    assert store.tries.list_claims("w2") == []
    claimed = store.events.read_events(EventQuery(types=("task.claimed",)))
    assert [(e.task_id, e.payload) for e in claimed] == [
        ("a", {"try_number": 1, "worker": "w1", "map_index": -1})
    ]


def test_a_try_that_is_not_running_cannot_be_claimed(store):
    new_run(store)
    assert store.tries.claim_try(key("a"), 1, "s1", "w1") is None  # still queued
    move(store, "a", Q, RUN, try_number=1)
    assert store.tries.claim_try(key("a"), 2, "s1", "w1") is None  # another try
    assert store.tries.claim_try(key("missing"), 1, "s1", "w1") is None
    move(store, "a", RUN, OK)
    assert store.tries.claim_try(key("a"), 1, "s1", "w1") is None  # over
    assert store.tries.list_claims() == []


def test_a_report_marks_the_claim_and_appends_its_event(store):
    new_run(store)
    move(store, "a", Q, RUN, try_number=1)
    store.tries.claim_try(key("a"), 1, "s1", "w1")
    report = TryReport("success", follow=("b",), worker_id="w1", submission="s1")
    event = store.tries.report_try(key("a"), 1, report)
    assert event.type == "task.reported" and event.task_id == "a"
    assert event.payload == {
        "try_number": 1,
        "outcome": "success",
        "error": None,
        "follow": ["b"],
        "poke_ok": True,
        "map_index": -1,
        "worker": "w1",
    }
    (claim,) = store.tries.list_claims()
    assert claim.reported_at is not None
    # A duplicate of the delivery finds the reported claim: nothing runs twice.
    assert store.tries.claim_try(key("a"), 1, "s1", "w2") == claim
    assert store.tries.prune_claims() == 0  # the instance still shows the try running
    move(store, "a", RUN, OK)
    assert store.tries.prune_claims() == 1
    assert store.tries.list_claims() == []


def test_another_delivery_of_the_same_try_is_claimed_anew(store):
    """A sensor's try is sent once per poke, each a submission of its own."""
    new_run(store)
    move(store, "a", Q, RUN, try_number=1)
    store.tries.claim_try(key("a"), 1, "poke-1", "w1")
    store.tries.report_try(key("a"), 1, TryReport("success", poke_ok=False, submission="poke-1"))
    again = store.tries.claim_try(key("a"), 1, "poke-2", "w2")
    assert again is not None and again.worker_id == "w2"


def test_concurrent_claims_have_one_winner(store):
    new_run(store)
    move(store, "a", Q, RUN, try_number=1)
    holders: list[str] = []
    barrier = threading.Barrier(8)

    def claim(worker: str) -> None:
        barrier.wait(timeout=10)
        claim = store.tries.claim_try(key("a"), 1, "s1", worker)
        assert claim is not None
        holders.append(claim.worker_id)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(holders) == 8 and len(set(holders)) == 1
    assert len(store.events.read_events(EventQuery(types=("task.claimed",)))) == 1
