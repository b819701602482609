"""The dispatcher over a real SQLite outbox and real receivers: what is final and what is
tried again, attempts recorded with their errors, a delivery that hangs, and several
dispatchers on one outbox delivering each notification once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import pytest

from pipeline_core.metrics import MetricsCollector
from pipeline_core.notify.dispatch import DeliverySettings, Dispatcher
from pipeline_core.notify.targets import SmtpSettings, Targets
from pipeline_core.store import open_store
from pipeline_core.store.base import Store
from pipeline_core.store.types import Notification, NotificationQuery
from tests.conftest import poll_until
from tests.notify.receivers import MailServer, Receiver
from tests.store.helpers import move, new_run
from tests.store.test_conformance_outbox import register

FAST = {"backoff": 0.05, "max_backoff": 0.2}


def rules(target: str) -> str:
    return f"dag_id: etl\nnotify: [{{on: [task_failed], {target}}}]\ntasks: {{a: {{}}, b: {{}}, c: {{}}}}\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield opened
    opened.close()


def fail_tasks(store: Store, run_id: str = "r1", tasks: tuple[str, ...] = ("a",)) -> None:
    new_run(store, run_id=run_id)
    for task_id in tasks:
        move(store, task_id, "queued", "running", run_id=run_id, try_number=1)
        move(store, task_id, "running", "failed", run_id=run_id, error="boom")


def settled(store: Store, count: int = 1, timeout: float = 15) -> list[Notification]:
    def done() -> bool:
        items = store.notifications.list_notifications(NotificationQuery(limit=500)).items
        return len(items) >= count and all(n.state != "pending" for n in items)

    poll_until(done, timeout=timeout)
    query = NotificationQuery(limit=500)
    return [
        store.notifications.get_notification(n.id)
        for n in store.notifications.list_notifications(query).items
    ]


@contextmanager
def dispatching(
    store: Store, settings: DeliverySettings, metrics: MetricsCollector | None = None,
    receiver: Receiver | None = None,
) -> Iterator[Dispatcher]:  # fmt: skip
    """A dispatcher on ``store`` while the block runs; stopped after it, with ``receiver``."""
    dispatcher = Dispatcher(store, settings, metrics=metrics).start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        if receiver is not None:
            receiver.stop()


def counters(metrics: MetricsCollector) -> dict[str, float]:
    return {c["name"]: c["value"] for c in metrics.snapshot()["counters"]}


def test_a_410_is_final_after_one_attempt_and_counted(store: Store) -> None:
    receiver = Receiver(status=lambda path: 410).start()
    register(store, rules(f"webhook: '{receiver.url}'"))
    metrics = MetricsCollector()
    with dispatching(store, DeliverySettings(**FAST), metrics, receiver):
        fail_tasks(store)
        [n] = settled(store)
        assert (n.state, n.attempts, n.last_status) == ("failed", 1, 410)
        assert "410" in (n.last_error or "")
        assert len(receiver.received) == 1
        assert counters(metrics)["notifications.failed"] == 1


def test_5xx_is_tried_with_backoff_until_it_is_delivered(store: Store) -> None:
    answers = iter([503, 500, 429])
    receiver = Receiver(status=lambda path: next(answers, 200)).start()
    register(store, rules(f"webhook: '{receiver.url}'"))
    metrics = MetricsCollector()
    with dispatching(store, DeliverySettings(**FAST), metrics, receiver):
        fail_tasks(store)
        [n] = settled(store)
        assert (n.state, n.attempts) == ("delivered", 4)
        assert [a.status for a in n.history] == [503, 500, 429, 200]
        gaps = [(b.at - a.at).total_seconds() for a, b in pairwise(n.history)]
        assert all(gap >= 0.04 for gap in gaps), gaps  # each waited its backoff
        assert {r.delivery for r in receiver.received} == {n.id}
        assert counters(metrics)["notifications.delivered"] == 1
        assert counters(metrics)["notifications.attempts"] == 4


def test_an_smtp_server_that_refuses_is_retried_then_failed(store: Store) -> None:
    with MailServer() as mail:
        mail.refuse = True
        register(store, rules("email: {to: [oncall@example.com]}"))
        smtp = SmtpSettings(host="127.0.0.1", port=mail.port, sender="pc@example.com")
        settings = DeliverySettings(targets=Targets(timeout=5, smtp=smtp), max_attempts=3, **FAST)
        with dispatching(store, settings):
            fail_tasks(store)
            [n] = settled(store)
            assert (n.state, n.attempts) == ("failed", 3)
            assert "550" in (n.last_error or "")
            assert mail.messages == []


def test_a_receiver_that_hangs_costs_one_timeout_and_is_tried_again(store: Store) -> None:
    hold = threading.Event()
    receiver = Receiver(hang=hold).start()
    register(store, rules(f"webhook: '{receiver.url}'"))
    settings = DeliverySettings(targets=Targets(timeout=0.5), **FAST)
    with dispatching(store, settings, receiver=receiver):
        fail_tasks(store)
        poll_until(lambda: _attempts(store) >= 1, timeout=10)
        receiver.hang = None
        hold.set()
        [n] = settled(store)
        assert n.state == "delivered" and n.attempts >= 2
        assert n.history[0].error == "no answer within 0.5s"
        assert n.history[0].duration_ms < 2000


def _attempts(store: Store) -> int:
    items = store.notifications.list_notifications(NotificationQuery()).items
    return max((n.attempts for n in items), default=0)


def test_two_dispatchers_on_one_outbox_deliver_each_notification_once(store: Store) -> None:
    receiver = Receiver().start()
    register(store, rules(f"webhook: '{receiver.url}'"))
    dispatchers = [Dispatcher(store, DeliverySettings(**FAST)).start() for _ in range(2)]
    try:
        for i in range(20):
            fail_tasks(store, run_id=f"r{i}", tasks=("a", "b", "c"))
        items = settled(store, 60, timeout=30)
        assert {n.state for n in items} == {"delivered"}
        seen = Counter(r.delivery for r in receiver.wait_for(60))
        assert len(seen) == 60 and set(seen.values()) == {1}
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop()
        receiver.stop()


def test_a_stopped_dispatcher_leaves_the_outbox_to_the_next(store: Store) -> None:
    receiver = Receiver()  # down while the first dispatcher tries
    register(store, rules(f"webhook: '{receiver.url}'"))
    first = Dispatcher(store, DeliverySettings(**FAST)).start()
    fail_tasks(store)
    poll_until(lambda: _attempts(store) >= 1, timeout=10)
    first.stop()
    receiver.start()
    second = Dispatcher(store, DeliverySettings(**FAST)).start()
    try:
        [n] = settled(store)
        assert n.state == "delivered"
        assert [r.delivery for r in receiver.received] == [n.id]
    finally:
        second.stop()
        receiver.stop()
