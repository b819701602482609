"""Accounts of the API: named tokens, each with a role and an optional DAG scope. Pure.

Roles are ordered — ``viewer`` reads everything but secret values (which every answer masks
anyway); ``operator`` also triggers, cancels, retries, marks, clears, pauses and backfills;
``admin`` also manages pools, variables, connections and tokens and reads the audit trail.
A token is 32 random bytes; only its SHA-256 is stored (a random token needs no slow hash:
nothing can be guessed from it), so the plain token is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

ROLES = ("viewer", "operator", "admin")
#: The role of the single ``--auth-token`` of earlier versions.
LEGACY_NAME = "auth-token"
TOKEN_PREFIX = "pct_"
NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
TAG = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")


@dataclass(frozen=True, slots=True)
class Account:
    """Who a request comes from: a token's name, role, scope and expiry."""

    name: str
    role: str
    dags_tag: str | None = None
    expires_at: datetime | None = None

    def may(self, needed: str) -> bool:
        return allows(self.role, needed)

    def sees(self, tags: tuple[str, ...] | list[str]) -> bool:
        """Whether a DAG with ``tags`` is within this account's scope."""
        return self.dags_tag is None or self.dags_tag in tags


ADMIN = Account(LEGACY_NAME, "admin")


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` is ``needed`` or above it."""
    return ROLES.index(role) >= ROLES.index(needed)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ValueError(f"invalid token name {name!r:.60}: use letters, digits, '_', '-', '.'")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r:.40}: use one of {', '.join(ROLES)}")
    return role


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise ValueError(f"invalid DAG tag {tag!r:.60}")
    return tag
