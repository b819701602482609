"""API tokens and the audit trail in SQL. A token row keeps the SHA-256 of the token, never
the token; a revoked token's row stays (so a server that has seen tokens keeps asking for
one) until a token of the same name replaces it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline_core.credentials.accounts import (
    check_name,
    check_role,
    check_tag,
    new_token,
    token_hash,
)
from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.events import TOKEN_REVOKED
from pipeline_core.model import iso
from pipeline_core.store.accounts import ApiToken, AuditEntry
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import Page

TOKEN_COLUMNS = "name, role, dags_tag, created_at, expires_at, revoked_at"
AUDIT_COLUMNS = "id, at, actor, action, target, status, request_id, source"


class AccountsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def create_token(
        self, name: str, role: str, *, dags_tag: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[ApiToken, str]:  # fmt: skip
        try:
            check_name(name), check_role(role)
            if dags_tag is not None:
                check_tag(dags_tag)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        plain = new_token()

        def work(tx: Tx, pending: Pending) -> ApiToken:
            row = tx.one("SELECT revoked_at FROM api_tokens WHERE name = ?", (name,))
            if row is not None and row[0] is None:
                raise Conflict(f"a token named '{name}' exists: revoke it first")
            now = self.sql.clock()
            tx.run("DELETE FROM api_tokens WHERE name = ?", (name,))
            tx.run(
                f"INSERT INTO api_tokens (token_hash, {TOKEN_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (token_hash(plain), name, role, dags_tag, iso(now), iso(expires_at)),
            )
            return ApiToken(name, role, dags_tag, now, expires_at, None)

        token: ApiToken = self.sql.write(work)
        return token, plain

    def list_tokens(self) -> list[ApiToken]:
        rows = self.sql.read(
            lambda tx: tx.rows(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name")
        )
        return [_token(row) for row in rows]

    def revoke_token(self, name: str) -> ApiToken:
        def work(tx: Tx, pending: Pending) -> ApiToken:
            row = tx.one(f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE name = ?", (name,))
            if row is None:
                raise NotFound(f"no token named '{name}'")
            if row[5] is not None:
                raise Conflict(f"token '{name}' was revoked at {row[5]}")
            now = self.sql.clock()
            tx.run("UPDATE api_tokens SET revoked_at = ? WHERE name = ?", (iso(now), name))
            self.sql.append(tx, pending, [(TOKEN_REVOKED, {"name": name}, None, None, None)], now)
            return dataclasses.replace(_token(row), revoked_at=now)

        token: ApiToken = self.sql.write(work)
        return token

    def find_token(self, token_hash: str) -> ApiToken | None:
        query = f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?"
        row = self.sql.read(lambda tx: tx.one(query, (token_hash,)))
        return None if row is None else _token(row)

    def has_tokens(self) -> bool:
        row = self.sql.read(lambda tx: tx.one("SELECT 1 FROM api_tokens LIMIT 1"))
        return row is not None

    def record_audit(
        self, actor: str, action: str, target: str, status: int, *,
        request_id: str | None = None, source: str | None = None,
    ) -> None:  # fmt: skip
        self.sql.write(lambda tx, _: tx.run(
            f"INSERT INTO audit_log ({AUDIT_COLUMNS[4:]}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (iso(self.sql.clock()), actor, action, target[:1000], status, request_id,
             source)))  # fmt: skip

    def list_audit(
        self, *, actor: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[AuditEntry]:
        where, args = ("WHERE actor = ?", (actor,)) if actor is not None else ("", ())

        def read(tx: Tx) -> Page[AuditEntry]:
            total = int(tx.scalar(f"SELECT COUNT(*) FROM audit_log {where}", args))
            rows = tx.rows(
                f"SELECT {AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC "
                "LIMIT ? OFFSET ?", (*args, limit, offset))  # fmt: skip
            return Page([_audit(row) for row in rows], total, limit, offset)

        page: Page[AuditEntry] = self.sql.read(read)
        return page


def _token(row: Sequence[Any]) -> ApiToken:
    return ApiToken(row[0], row[1], row[2], parse_ts(row[3]), parse_ts(row[4]), parse_ts(row[5]))


def _audit(row: Sequence[Any]) -> AuditEntry:
    return AuditEntry(int(row[0]), parse_ts(row[1]), row[2], row[3], row[4], int(row[5]),
                      row[6], row[7])  # fmt: skip
