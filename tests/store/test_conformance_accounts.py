"""API tokens and the audit trail on every backend: only a token's hash is stored, names are
unique among live tokens, revocation is final and announced, expiry and scope are kept, and
the audit trail pages newest first by actor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline_core.credentials.accounts import token_hash
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.store.types import EventQuery


def test_tokens_are_stored_hashed_and_found_by_their_hash(store) -> None:  # type: ignore[no-untyped-def]
    accounts = store.accounts
    assert not accounts.has_tokens()
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    token, plain = accounts.create_token("ci", "operator", dags_tag="team-a", expires_at=expires)
    assert plain.startswith("pct_") and len(plain) > 40
    assert (token.name, token.role, token.dags_tag, token.expires_at) == (
        "ci", "operator", "team-a", expires
    )  # fmt: skip
    assert accounts.has_tokens()
    assert accounts.find_token(token_hash(plain)) == token
    assert accounts.find_token(token_hash(plain + "x")) is None
    rows = store.sql.read(lambda tx: str(tx.rows("SELECT * FROM api_tokens")))
    assert plain not in rows and token_hash(plain) in rows
    with pytest.raises(Conflict, match="revoke it first"):
        accounts.create_token("ci", "admin")
    for name, role in (("bad name", "admin"), ("ok", "root")):
        with pytest.raises(InvalidRequest):
            accounts.create_token(name, role)


def test_revocation_is_final_announced_and_frees_the_name(store) -> None:  # type: ignore[no-untyped-def]
    accounts = store.accounts
    _, plain = accounts.create_token("ci", "viewer")
    revoked = accounts.revoke_token("ci")
    assert revoked.revoked_at is not None
    assert accounts.find_token(token_hash(plain)).revoked_at == revoked.revoked_at
    with pytest.raises(Conflict, match="was revoked"):
        accounts.revoke_token("ci")
    with pytest.raises(NotFound):
        accounts.revoke_token("ghost")
    events = store.events.read_events(EventQuery(types=("token.revoked",)))
    assert [e.payload["name"] for e in events] == ["ci"]
    again, new_plain = accounts.create_token("ci", "admin")
    assert again.revoked_at is None and accounts.find_token(token_hash(plain)) is None
    assert accounts.find_token(token_hash(new_plain)).role == "admin"
    assert [t.name for t in accounts.list_tokens()] == ["ci"]


def test_the_audit_trail_pages_newest_first_by_actor(store) -> None:  # type: ignore[no-untyped-def]
    accounts = store.accounts
    for index in range(5):
        actor = "ci" if index % 2 else "ops"
        accounts.record_audit(actor, "trigger_run", f"/api/v1/dags/d{index}/runs", 201,
                              request_id=f"r{index}", source="127.0.0.1:5000")  # fmt: skip
    page = accounts.list_audit(limit=2)
    assert page.total == 5 and [e.target for e in page.items] == [
        "/api/v1/dags/d4/runs", "/api/v1/dags/d3/runs"
    ]  # fmt: skip
    mine = accounts.list_audit(actor="ci")
    assert mine.total == 2 and {e.request_id for e in mine.items} == {"r1", "r3"}
    entry = mine.items[0]
    assert (entry.action, entry.status, entry.source) == ("trigger_run", 201, "127.0.0.1:5000")
    assert abs(entry.at - datetime.now(UTC)) < timedelta(minutes=5)
