"""The store's part for API tokens and the audit trail (``store.accounts``): the protocol
every backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pipeline_core.store.types import Page


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A named API token as stored (its hash stays in the store)."""

    name: str
    role: str
    dags_tag: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One request that changed something (or tried to): who, what, on what, the answer."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    status: int
    request_id: str | None
    source: str | None


class AccountStore(Protocol):
    def create_token(
        self, name: str, role: str, *, dags_tag: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[ApiToken, str]:  # fmt: skip
        """A new token and its plain text (shown once); ``Conflict`` when the name is taken
        by a token that is not revoked."""
        ...

    def list_tokens(self) -> list[ApiToken]: ...

    def revoke_token(self, name: str) -> ApiToken:
        """Revoke (``NotFound``; ``Conflict`` when already revoked); appends
        ``token.revoked`` so that servers end the streams it holds."""
        ...

    def find_token(self, token_hash: str) -> ApiToken | None:
        """The token with this hash, revoked or not."""
        ...

    def has_tokens(self) -> bool:
        """Whether any token was ever made (the API then asks every request for one)."""
        ...

    def record_audit(
        self, actor: str, action: str, target: str, status: int, *,
        request_id: str | None = None, source: str | None = None,
    ) -> None: ...  # fmt: skip

    def list_audit(
        self, *, actor: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[AuditEntry]:
        """Newest first."""
        ...
