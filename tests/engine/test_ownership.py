"""Leases: which other engines still own their runs (pure: explicit times and process checks)."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from pipeline_core.engine import ownership
from pipeline_core.store.types import Heartbeat

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HERE = socket.gethostname()


def beat(cid: str, host: str = HERE, pid: int = 4242, age: float = 1.0) -> Heartbeat:
    return Heartbeat(cid, "engine", host, pid, NOW - timedelta(seconds=age))


def holders(*beats: Heartbeat, exists=lambda pid: True) -> list[str]:  # type: ignore[no-untyped-def]
    found = ownership.lease_holders(
        beats, me="me", hostname=HERE, now=NOW, expire_after=30, exists=exists
    )
    return [b.component_id for b in found]


def test_a_fresh_lease_of_a_running_process_holds():
    assert holders(beat("other")) == ["other"]


def test_an_expired_lease_does_not_hold():
    assert holders(beat("old", age=31)) == []


def test_a_lease_of_a_dead_process_on_this_host_ends_at_once():
    assert holders(beat("killed"), exists=lambda pid: False) == []


def test_a_lease_from_another_host_holds_until_it_expires():
    assert holders(beat("remote", host="elsewhere"), exists=lambda pid: False) == ["remote"]
    assert holders(beat("remote", host="elsewhere", age=45)) == []


def test_my_own_lease_never_counts():
    assert holders(beat("me")) == []


def test_a_lease_with_this_process_id_holds_only_for_an_engine_running_here():
    assert holders(beat("previous-incarnation", pid=os.getpid())) == []
    ownership.hold("sibling")
    try:
        assert holders(beat("sibling", pid=os.getpid())) == ["sibling"]
    finally:
        ownership.let_go("sibling")
