"""The in-process event bus behind live streams: closing it right after a publish ends its
dispatcher at once — a stop that arrived while the dispatcher gathered a backlog was once
taken for an event batch, leaving it asleep until the close gave up on it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from pipeline_core.api.sse.bus import EventBus
from pipeline_core.events import Event

AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("batches", [1, 2, 50])
def test_closing_just_after_a_publish_ends_the_dispatcher_at_once(batches):
    for _ in range(20):  # the stop must land while the dispatcher coalesces, now and then
        bus = EventBus()
        bus.subscribe()
        for seq in range(1, batches + 1):
            bus.publish([Event(seq, "run.state_changed", AT, "d", "r")])
        started = time.monotonic()
        bus.close_all()
        assert time.monotonic() - started < 1.0
        assert not bus._dispatcher.is_alive()
