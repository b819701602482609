"""``/tokens``, ``/audit`` and ``/whoami``: the API's accounts. An admin makes, lists and
revokes named tokens (the plain token is in the answer that makes it, and nowhere else) and
reads the audit trail; any account may ask who it is (the dashboard shows its role)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pipeline_core.api.http import Request, Response, bad_request, envelope, listing
from pipeline_core.api.middleware.accounts import Gate
from pipeline_core.api.openapi.operation import PAGE, Operation, Param
from pipeline_core.api.openapi.parts import closed, envelope_of
from pipeline_core.api.openapi.schemas import obj
from pipeline_core.api.params import page
from pipeline_core.clock import Clock
from pipeline_core.credentials.accounts import NAME, ROLES, TAG
from pipeline_core.dag.model import parse_duration
from pipeline_core.model import iso
from pipeline_core.store.accounts import ApiToken, AuditEntry
from pipeline_core.store.base import Store

TOKEN_NAME = {"type": "string", "pattern": NAME.pattern}
WHEN = TEXT = {"type": ["string", "null"]}
TOKEN = obj(["name", "role"], name={"type": "string"}, role={"enum": list(ROLES)},
            dags_tag={"type": ["string", "null"]}, created_at={"type": "string"},
            expires_at=WHEN, revoked_at=WHEN, token={"type": "string"})  # fmt: skip
AUDIT = obj(["id", "at", "actor", "action", "target", "status"], id={"type": "integer"},
            at={"type": "string"}, actor={"type": "string"}, action={"type": "string"},
            target={"type": "string"}, status={"type": "integer"},
            request_id=TEXT, source=TEXT)  # fmt: skip
EXPIRES = {"type": ["string", "number"], "description": "a duration such as 30d, 12h or 3600"}

LIST_TOKENS = Operation("list_tokens", "accounts", "List API tokens",
    "Every named token with its role, scope, expiry and revocation (never the token).",
    envelope_of(TOKEN, listing=True), PAGE, read=True, role="admin", scope="none")  # fmt: skip
CREATE_TOKEN = Operation("create_token", "accounts", "Make an API token",
    "A new named token; the answer is the only place its plain text appears.",
    envelope_of(TOKEN),
    body=closed(["name", "role"], name=TOKEN_NAME, role={"enum": list(ROLES)},
                dags_tag={"type": "string", "pattern": TAG.pattern}, expires_in=EXPIRES),
    body_required=True, example={"name": "ci", "role": "operator", "expires_in": "30d"},
    created=True, role="admin", scope="none")  # fmt: skip
REVOKE_TOKEN = Operation("revoke_token", "accounts", "Revoke an API token",
    "Refused from then on (within a second) and its event streams end.", envelope_of(TOKEN),
    (Param("name", "path", TOKEN_NAME),), role="admin", scope="none")  # fmt: skip
LIST_AUDIT = Operation("list_audit", "accounts", "Read the audit trail",
    "Requests of accounts that change something (or tried to), newest first.",
    envelope_of(AUDIT, listing=True),
    (Param("actor", schema=TOKEN_NAME), *PAGE), read=True, role="admin", scope="none")  # fmt: skip
WHOAMI = Operation("whoami", "accounts", "Who the bearer token is",
    "The account of the request: its name, role, DAG scope and expiry (auth_required false: "
    "the server asks for no token, and everyone may do everything).",
    envelope_of(obj(["auth_required"], auth_required={"type": "boolean"},
                    name={"type": ["string", "null"]}, role={"enum": list(ROLES)},
                    dags_tag={"type": ["string", "null"]}, expires_at=WHEN)),
    read=True, scope="none")  # fmt: skip

Handle = Callable[[Request], Response]


def token_dict(token: ApiToken) -> dict[str, Any]:
    return {"name": token.name, "role": token.role, "dags_tag": token.dags_tag,
            "created_at": iso(token.created_at), "expires_at": iso(token.expires_at),
            "revoked_at": iso(token.revoked_at)}  # fmt: skip


def audit_dict(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": iso(entry.at), "actor": entry.actor, "action": entry.action,
            "target": entry.target, "status": entry.status, "request_id": entry.request_id,
            "source": entry.source}  # fmt: skip


def list_tokens(store: Store) -> Handle:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        tokens = store.accounts.list_tokens()
        shown = [token_dict(t) for t in tokens[offset : offset + limit]]
        return listing(shown, len(tokens), limit, offset)

    return handle


def create_token(store: Store, gate: Gate, clock: Clock) -> Handle:
    def handle(request: Request) -> Response:
        body = request.fields
        expires = None
        if body.get("expires_in") is not None:
            try:
                expires = clock.now() + timedelta(seconds=parse_duration(body["expires_in"]))
            except (ValueError, OverflowError) as exc:
                raise bad_request(f"expires_in: {exc}") from None
        token, plain = store.accounts.create_token(
            body["name"], body["role"], dags_tag=body.get("dags_tag"), expires_at=expires
        )
        gate.forget()
        return envelope({**token_dict(token), "token": plain}, status=201,
                        headers={"Location": f"/api/v1/tokens/{token.name}"})  # fmt: skip

    return handle


def revoke_token(store: Store, gate: Gate) -> Handle:
    def handle(request: Request) -> Response:
        token = store.accounts.revoke_token(request.params["name"])
        gate.forget()
        return envelope(token_dict(token))

    return handle


def list_audit(store: Store) -> Handle:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        found = store.accounts.list_audit(
            actor=request.args.get("actor"), limit=limit, offset=offset
        )
        return listing([audit_dict(e) for e in found.items], found.total, limit, offset)

    return handle


def whoami(request: Request) -> Response:
    account = request.account
    if account is None:
        return envelope({"auth_required": False, "name": None, "role": "admin",
                         "dags_tag": None, "expires_at": None})  # fmt: skip
    return envelope({"auth_required": True, "name": account.name, "role": account.role,
                     "dags_tag": account.dags_tag,
                     "expires_at": iso(account.expires_at)})  # fmt: skip
