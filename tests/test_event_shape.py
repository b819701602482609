"""What an event shows on the API and the stream: what it is about, then its payload."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline_core.events import Event


def test_an_event_names_what_it_is_about_though_its_payload_does_not() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    failed = Event(
        7, "notification.failed", at, "etl", "r1", None, {"id": "ntf-1", "state": "failed"}
    )
    assert failed.to_dict() == {
        "seq": 7, "type": "notification.failed", "dag_id": "etl", "run_id": "r1",
        "id": "ntf-1", "state": "failed", "timestamp": "2026-01-01T00:00:00.000000Z",
    }  # fmt: skip
    pool = Event(8, "pool.updated", at, payload={"pool": "io", "slots": 4})
    assert set(pool.to_dict()) == {"seq", "type", "pool", "slots", "timestamp"}
