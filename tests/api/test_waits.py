"""``RunWaiters``: held requests woken once — by the run's end, their deadline, or a stop."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from pipeline_core.api.waits import ENDED, STOPPING, TIMED_OUT, RunWaiters
from pipeline_core.events import Event


def _run_event(run_id: str, state: str, seq: int = 1) -> Event:
    payload = {"new_state": state, "previous_state": "running"}
    return Event(seq, "run.state_changed", datetime.now(UTC), "d", run_id, None, payload)


class Woken:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.event = threading.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.event.set()


def test_the_end_of_the_run_wakes_its_waiters_once():
    waiters = RunWaiters()
    try:
        mine, other = Woken(), Woken()
        waiters.hold(("d", "r"), time.monotonic() + 60, mine)
        waiters.hold(("d", "x"), time.monotonic() + 60, other)
        waiters.on_events([_run_event("r", "running")])  # not an end
        assert mine.reasons == [] and waiters.held() == 2
        waiters.on_events([_run_event("r", "success")])
        waiters.on_events([_run_event("r", "failed")])
        assert mine.reasons == [ENDED] and other.reasons == [] and waiters.held() == 1
    finally:
        waiters.stop()


def test_a_hold_after_the_end_wakes_at_once_until_the_run_moves_again():
    waiters = RunWaiters()
    try:
        waiters.on_events([_run_event("r", "cancelled")])
        late = Woken()
        waiters.hold(("d", "r"), time.monotonic() + 60, late)
        assert late.reasons == [ENDED]
        waiters.on_events([_run_event("r", "running")])  # retried: held again
        again = Woken()
        waiters.hold(("d", "r"), time.monotonic() + 60, again)
        assert again.reasons == [] and waiters.held() == 1
    finally:
        waiters.stop()


def test_a_deadline_wakes_the_waiter_and_only_it():
    waiters = RunWaiters()
    try:
        soon, later = Woken(), Woken()
        waiters.hold(("d", "r"), time.monotonic() + 0.05, soon)
        waiters.hold(("d", "r"), time.monotonic() + 60, later)
        assert soon.event.wait(5) and soon.reasons == [TIMED_OUT]
        waiters.on_events([_run_event("r", "success")])
        assert later.reasons == [ENDED] and soon.reasons == [TIMED_OUT]
    finally:
        waiters.stop()


def test_stopping_hands_every_waiter_back_and_refuses_new_ones():
    waiters = RunWaiters()
    held = [Woken() for _ in range(3)]
    for i, woken in enumerate(held):
        waiters.hold(("d", f"r{i}"), time.monotonic() + 60, woken)
    waiters.stop()
    assert [w.reasons for w in held] == [[STOPPING]] * 3
    late = Woken()
    waiters.hold(("d", "r"), time.monotonic() + 60, late)
    assert late.reasons == [STOPPING]


def test_many_woken_waiters_leave_no_deadlines_behind():
    waiters = RunWaiters()
    try:
        for i in range(500):
            waiters.hold(("d", f"r{i}"), time.monotonic() + 3600, Woken())
            waiters.on_events([_run_event(f"r{i}", "success", seq=i)])
        assert waiters.held() == 0
        assert len(waiters._deadlines) <= 130  # pruned, not kept for an hour
    finally:
        waiters.stop()
