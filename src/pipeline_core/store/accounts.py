"""The store's part for API tokens and the audit trail (``store.accounts``): the protocol
every backend implements."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pipeline_core.store.types import ApiToken, AuditEntry, Page


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
