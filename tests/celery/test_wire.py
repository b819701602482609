"""The try message and the report event, and when a claim counts as lost. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline_core.engine.executors.celery.wire import (
    REPORTED,
    TryMessage,
    completion_of,
    lost_claim_error,
)
from pipeline_core.events import Event
from pipeline_core.model import TaskKey
from pipeline_core.store.types import Heartbeat, TryClaim

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
KEY = TaskKey("d", "r", "t")


def test_a_message_goes_out_and_comes_back_the_same():
    message = TryMessage(KEY, 2, "s", "v" * 64, 30.0, 1000)
    assert TryMessage.from_kwargs(message.to_kwargs()) == message
    mapped = TryMessage(TaskKey("d", "r", "t", 7), 1, "s", "v")
    assert TryMessage.from_kwargs(mapped.to_kwargs()).key.map_index == 7
    older = {k: v for k, v in message.to_kwargs().items() if k != "map_index"}
    assert TryMessage.from_kwargs(older) == message  # a message from before mapping


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dag_id": ""}, "'dag_id'"),
        ({"run_id": 5}, "'run_id'"),
        ({"submission": None}, "'submission'"),
        ({"try_number": True}, "'try_number'"),
        ({"try_number": 0}, "'try_number'"),
        ({"timeout": float("nan")}, "'timeout'"),
        ({"timeout": -1}, "'timeout'"),
        ({"xcom_max_bytes": "big"}, "'xcom_max_bytes'"),
        ({"map_index": -2}, "'map_index'"),
        ({"map_index": "3"}, "'map_index'"),
    ],
)
def test_a_malformed_message_names_its_field(change, named):
    data = {**TryMessage(KEY, 1, "s", "v").to_kwargs(), **change}
    with pytest.raises(ValueError, match=named):
        TryMessage.from_kwargs(data)


def test_a_report_event_becomes_the_completion_and_nothing_else_does():
    payload = {
        "try_number": 3,
        "outcome": "success",
        "error": None,
        "follow": ["b"],
        "poke_ok": False,
    }
    completion = completion_of(Event(1, REPORTED, NOW, "d", "r", "t", payload))
    assert completion is not None
    assert (completion.key, completion.try_number, completion.outcome) == (KEY, 3, "success")
    assert completion.result.follow == ("b",) and completion.result.poke_ok is False
    assert completion_of(Event(2, "task.claimed", NOW, "d", "r", "t", {"try_number": 1})) is None
    of_an_instance = completion_of(
        Event(3, REPORTED, NOW, "d", "r", "t", {**payload, "map_index": 4})
    )
    assert of_an_instance is not None and of_an_instance.key == TaskKey("d", "r", "t", 4)


def test_a_claim_is_lost_when_its_worker_falls_silent():
    claim = TryClaim(KEY, 1, "s", "w1", NOW - timedelta(seconds=60))
    fresh = Heartbeat("w1", "worker", "h", 1, NOW - timedelta(seconds=5))
    silent = Heartbeat("w1", "worker", "h", 1, NOW - timedelta(seconds=45))
    assert lost_claim_error(claim, fresh, NOW, 30) is None
    assert lost_claim_error(claim, silent, NOW, 30) == "worker w1 lost: no heartbeat for 45s"
    assert lost_claim_error(claim, None, NOW, 30) == "worker w1 lost: it has no heartbeat"
    young = TryClaim(KEY, 1, "s", "w1", NOW - timedelta(seconds=1))
    assert lost_claim_error(young, None, NOW, 30) is None  # before its first heartbeat
    reported = TryClaim(KEY, 1, "s", "w1", NOW - timedelta(seconds=60), NOW)
    assert lost_claim_error(reported, silent, NOW, 30) is None
