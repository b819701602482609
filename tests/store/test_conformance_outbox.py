"""The notification outbox, on every backend: written in the transaction of the event that
causes it (and only then), held, attempted, redelivered; deadlines recorded once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline_core.dag.serialize import dag_to_dict, definition_hash
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import MissDeadline, MoveRun, TaskChange, iso
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import AttemptOutcome, DagRecord, NotificationQuery
from tests.store.helpers import BASE, key, move, new_run

RULES = """
dag_id: etl
notify:
  - on: [run_failed, task_failed, deadline_missed]
    webhook: {url: "http://127.0.0.1:9/hook", secret: "${env:OUTBOX_SECRET}"}
  - on: task_retrying
    slack: "http://127.0.0.1:9/slack"
tasks:
  a: {notify: [{on: task_succeeded, callable: "json:dumps"}]}
  b: {}
  c: {}
"""


@pytest.fixture(autouse=True)
def secret(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OUTBOX_SECRET", "s3cret")


def register(store, text: str = RULES) -> None:  # type: ignore[no-untyped-def]
    dag = load_dag_text(text)
    definition = dag_to_dict(dag)
    store.dags.upsert_dag(
        DagRecord(dag.dag_id, definition=definition, definition_hash=definition_hash(definition))
    )


def notifications(store, **filters):  # type: ignore[no-untyped-def]
    return list(store.notifications.list_notifications(NotificationQuery(**filters)).items)


def test_an_ending_event_writes_one_notification_per_matching_rule(store) -> None:
    register(store)
    new_run(store)
    move(store, "a", "queued", "running", try_number=1)
    move(store, "a", "running", "failed", error="x" * 10_000)
    [n] = notifications(store)
    assert (n.event, n.dag_id, n.run_id, n.task_id, n.try_number) == (
        "task_failed",
        "etl",
        "r1",
        "a",
        1,
    )
    assert (n.rule, n.target_kind, n.state, n.attempts) == ("notify[0]", "webhook", "pending", 0)
    assert n.target == {"url": "http://127.0.0.1:9/hook", "secret": "${env:OUTBOX_SECRET}"}
    assert n.payload["delivery_id"] == n.id and n.payload["state"] == "failed"
    assert (
        n.payload["error"].startswith("x" * 4000) and "6000 more characters" in n.payload["error"]
    )
    assert "s3cret" not in repr(n)


def test_task_rules_hear_their_own_task_only(store) -> None:
    register(store)
    new_run(store)
    for task_id in ("a", "b"):
        move(store, task_id, "queued", "running", try_number=1)
        move(store, task_id, "running", "success")
    [n] = notifications(store)
    assert (n.task_id, n.rule, n.target_kind) == ("a", "tasks.a.notify[0]", "callable")


def test_a_failed_run_names_its_failed_tasks(store) -> None:
    register(store)
    new_run(store)
    store.runs.transition_run("etl", "r1", RunState.QUEUED, RunState.RUNNING)
    move(store, "b", "queued", "running", try_number=1)
    move(store, "b", "running", "failed", error="worker killed by signal 9 (out of memory?)")
    store.runs.transition_run("etl", "r1", RunState.RUNNING, RunState.FAILED)
    run_failed = notifications(store, state="pending")[0]
    assert run_failed.event == "run_failed" and run_failed.task_id is None
    assert run_failed.payload["error"] == (
        "task 'b' failed: worker killed by signal 9 (out of memory?)"
    )
    assert run_failed.payload["logical_date"] == iso(BASE)


def test_a_write_that_is_undone_leaves_no_notification(store) -> None:
    register(store)
    new_run(store)
    move(store, "a", "queued", "running", try_number=1)
    with pytest.raises(Conflict):  # the second change finds 'b' not running: all is undone
        store.runs.apply(
            [
                TaskChange(key("a"), TaskState.RUNNING, TaskState.FAILED, error="boom"),
                TaskChange(key("b"), TaskState.RUNNING, TaskState.FAILED),
            ]
        )
    assert notifications(store) == []
    assert store.tasks.get_task_instance(key("a")).state is TaskState.RUNNING


def test_a_dag_without_rules_notifies_nothing_and_rules_changed_apply_at_once(store) -> None:
    register(store, "dag_id: etl\ntasks: {a: {}, b: {}, c: {}}\n")
    new_run(store)
    move(store, "a", "queued", "running", try_number=1)
    move(store, "a", "running", "failed")
    assert notifications(store) == []
    register(store)
    move(store, "b", "queued", "running", try_number=1)
    move(store, "b", "running", "failed")
    assert [n.task_id for n in notifications(store)] == ["b"]


def test_holding_attempting_and_redelivering(store) -> None:
    register(store)
    new_run(store)
    move(store, "a", "queued", "running", try_number=1)
    move(store, "a", "running", "up_for_retry", error="flaky")
    [n] = notifications(store)
    now = int(store.clock().timestamp() * 1000) + 1000
    assert [h.id for h in store.notifications.claim_due(now, 5000, 10)] == [n.id]
    assert store.notifications.claim_due(now, 5000, 10) == []  # held
    assert store.notifications.next_due_ms() == now + 5000
    [again] = store.notifications.record_attempts(
        [(n.id, AttemptOutcome("pending", 503, "receiver answered 503", 12, now + 2000))]
    )
    assert (again.state, again.attempts, again.last_status, again.due_ms) == (
        "pending",
        1,
        503,
        now + 2000,
    )
    assert store.notifications.claim_due(now, 5000, 10) == []  # not due yet
    [held] = store.notifications.claim_due(now + 2000, 5000, 10)
    [done] = store.notifications.record_attempts(
        [(held.id, AttemptOutcome("delivered", 200, None, 3))]
    )
    assert (done.state, done.attempts, done.delivered_at is not None) == ("delivered", 2, True)
    detail = store.notifications.get_notification(n.id)
    assert [(a.number, a.status) for a in detail.history] == [(1, 503), (2, 200)]
    assert store.notifications.notification_counts() == {"pending": 0, "delivered": 1, "failed": 0}
    redelivered = store.notifications.redeliver(n.id)
    assert (redelivered.id, redelivered.state) == (n.id, "pending")
    with pytest.raises(Conflict):
        store.notifications.redeliver(n.id)
    with pytest.raises(NotFound):
        store.notifications.redeliver("ntf-999-0")
    kinds = [e.type for e in store.events.read_events(_events())]
    assert kinds.count("notification.delivered") == 1 and "notification.redelivery" in kinds


def test_attempts_are_recorded_together_or_not_at_all(store) -> None:
    register(store)
    new_run(store)
    for task_id in ("a", "b"):
        move(store, task_id, "queued", "running", try_number=1)
        move(store, task_id, "running", "failed", error="x")
    first, second = notifications(store)
    delivered, failed = (
        AttemptOutcome("delivered", 200, None, 3),
        AttemptOutcome("failed", 410, "gone", 4),
    )
    with pytest.raises(NotFound):
        store.notifications.record_attempts([(first.id, delivered), ("ntf-999-0", failed)])
    assert store.notifications.get_notification(first.id).attempts == 0  # nothing recorded
    both = store.notifications.record_attempts([(first.id, delivered), (second.id, failed)])
    assert [(n.id, n.state, n.attempts) for n in both] == [
        (first.id, "delivered", 1),
        (second.id, "failed", 1),
    ]
    kinds = [e.type for e in store.events.read_events(_events())]
    assert kinds.count("notification.delivered") == kinds.count("notification.failed") == 1


def test_a_deadline_is_recorded_once(store) -> None:
    register(store)
    new_run(store)
    store.runs.transition_run("etl", "r1", RunState.QUEUED, RunState.RUNNING)
    miss = MissDeadline("etl", "r1", BASE + timedelta(minutes=30), "continue")
    store.runs.apply([miss])
    store.runs.apply([miss, MoveRun("etl", "r1", RunState.RUNNING, RunState.FAILED)])
    kinds = [e.type for e in store.events.read_events(_events())]
    assert kinds.count("deadline.missed") == 1
    assert sorted(n.event for n in notifications(store)) == ["deadline_missed", "run_failed"]
    [deadline] = notifications(store, run_id="r1", state="pending")[1:]
    assert deadline.payload["deadline"] == "2026-01-01T00:30:00.000000Z"


def test_filters_and_pages(store) -> None:
    register(store)
    for run_id in ("r1", "r2"):
        new_run(store, run_id=run_id, day=int(run_id[1]))
        move(store, "a", "queued", "running", run_id=run_id, try_number=1)
        move(store, "a", "running", "failed", run_id=run_id)
    page = store.notifications.list_notifications(NotificationQuery(limit=1))
    assert (page.total, [n.run_id for n in page.items]) == (2, ["r2"])
    assert [n.run_id for n in notifications(store, run_id="r1")] == ["r1"]
    assert notifications(store, dag_id="other") == []
    assert notifications(store, state="failed") == []


def _events():  # type: ignore[no-untyped-def]
    from pipeline_core.store.types import EventQuery

    return EventQuery(limit=1000)
