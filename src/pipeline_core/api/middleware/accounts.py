"""Who may ask what: the bearer token of a request names an account (``--auth-token``: the
admin of earlier versions; a named token: its role and DAG scope), and the route it reached
names the role it needs and how it treats a scoped token.

A server asks for a token when it was given ``--auth-token`` or its store holds a named
token (made once, a server keeps asking, even after every token is revoked). What the store
says of a token is kept for ``cache_seconds``: a revoked token is refused that soon after,
and the streams it holds end as the revocation's event arrives. Nothing here blocks the
event loop: a check that would read the store says so, and the request goes to a thread.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from pipeline_core.api.http import HTTPError, Request, Response
from pipeline_core.api.middleware import Handler
from pipeline_core.api.openapi.operation import Operation
from pipeline_core.credentials.accounts import ADMIN, Account, token_hash
from pipeline_core.errors import NotFound, PipelineError
from pipeline_core.model import iso
from pipeline_core.store.accounts import AccountStore, ApiToken
from pipeline_core.store.dags import DagStore

QUERY_TOKEN_PATHS = ("/api/v1/events",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
log = logging.getLogger("pipeline_core.api")


class NeedsStore(Exception):
    """The check needs a read of the store: run it again on a handler thread."""


class Gate:
    def __init__(
        self,
        legacy_token: str | None,
        accounts: AccountStore | None,
        dags: DagStore | None,
        now: Callable[[], datetime],
        *,
        cache_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.legacy = legacy_token.encode() if legacy_token else None
        self.accounts, self.dags, self.now = accounts, dags, now
        self.cache_seconds, self.monotonic = cache_seconds, monotonic
        self._required: tuple[bool, float] | None = None
        self._tokens: dict[str, tuple[ApiToken | None, float]] = {}
        self._tags: dict[str, tuple[tuple[str, ...] | None, float]] = {}
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Read tokens from the store again (one was made or revoked here)."""
        with self._lock:
            self._tokens.clear()
            self._required = None

    def admit(self, request: Request, operation: Operation | None, *, from_memory: bool) -> None:
        """Set ``request.account`` and check its role and scope for ``operation``: 401, 403,
        404 (a DAG out of scope); ``NeedsStore`` when ``from_memory`` and it must read."""
        needed = operation.needed_role(request.method) if operation is not None else "public"
        if needed == "public":
            return
        account = self._account(request, from_memory)
        request.account = account
        if account is None:
            return
        assert operation is not None
        if not account.may(needed):
            raise HTTPError(
                403,
                "forbidden",
                f"{operation.operation_id} needs the {needed} role; token '{account.name}' "
                f"has the {account.role} role",
            )
        if account.dags_tag is not None:
            self._check_scope(request, operation, account, from_memory)

    # --- accounts ---------------------------------------------------------------------------
    def _account(self, request: Request, from_memory: bool) -> Account | None:
        if not self._is_required(from_memory):
            return None
        supplied = request.header("authorization") or ""
        scheme, _, value = supplied.partition(" ")
        if not supplied and request.path.rstrip("/") in QUERY_TOKEN_PATHS:
            # A browser EventSource cannot set headers: the stream also takes ?access_token=.
            scheme, value = "bearer", (request.query.get("access_token") or [""])[-1]
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise _unauthorized("a valid 'Authorization: Bearer <token>' header is required")
        if self.legacy is not None and hmac.compare_digest(value.encode(), self.legacy):
            return ADMIN
        token = self._token(token_hash(value), from_memory)
        if token is None:
            raise _unauthorized("the bearer token is not valid")
        if token.revoked_at is not None:
            raise _unauthorized(f"token '{token.name}' was revoked at {iso(token.revoked_at)}")
        if token.expires_at is not None and token.expires_at <= self.now():
            raise _unauthorized(f"token '{token.name}' expired at {iso(token.expires_at)}")
        return Account(token.name, token.role, token.dags_tag, token.expires_at)

    def _is_required(self, from_memory: bool) -> bool:
        if self.legacy is not None:
            return True
        if self.accounts is None:
            return False
        known = self._required
        if known is not None and (known[0] or self.monotonic() < known[1]):
            return known[0]  # once a token exists, one always will (revoked ones stay)
        if from_memory:
            raise NeedsStore
        required = self.accounts.has_tokens()
        self._required = (required, self.monotonic() + self.cache_seconds)
        return required

    def _token(self, digest: str, from_memory: bool) -> ApiToken | None:
        held = self._tokens.get(digest)
        if held is not None and self.monotonic() < held[1]:
            return held[0]
        if from_memory:
            raise NeedsStore
        assert self.accounts is not None  # a token is asked for only with a store of them
        token = self.accounts.find_token(digest)
        with self._lock:
            if len(self._tokens) >= 10_000:  # a flood of made-up tokens stays bounded
                self._tokens.clear()
            self._tokens[digest] = (token, self.monotonic() + self.cache_seconds)
        return token

    # --- DAG scope --------------------------------------------------------------------------
    def _check_scope(
        self, request: Request, operation: Operation, account: Account, from_memory: bool
    ) -> None:
        dag_id = request.params.get("dag_id")
        if dag_id is not None:
            tags = self._dag_tags(dag_id, from_memory)
            if tags is not None and not account.sees(tags):
                raise NotFound(f"no DAG '{dag_id}'")
        elif operation.scope == "all":
            raise HTTPError(
                403,
                "forbidden",
                f"token '{account.name}' is scoped to the DAGs tagged '{account.dags_tag}'; "
                f"{operation.operation_id} answers about every DAG",
            )

    def _dag_tags(self, dag_id: str, from_memory: bool) -> tuple[str, ...] | None:
        held = self._tags.get(dag_id)
        if held is not None and self.monotonic() < held[1]:
            return held[0]
        if from_memory or self.dags is None:
            if self.dags is None:
                return None
            raise NeedsStore
        try:
            tags: tuple[str, ...] | None = tuple(self.dags.get_dag(dag_id).tags)
        except NotFound:
            tags = None  # the route answers its own 404
        with self._lock:
            if len(self._tags) >= 10_000:
                self._tags.clear()
            self._tags[dag_id] = (tags, self.monotonic() + self.cache_seconds)
        return tags

    # --- the audit trail -------------------------------------------------------------------
    def audit(self, request: Request, call_next: Handler) -> Response | None:
        """Record each request of an account that may change something, with its answer."""
        response = call_next(request)
        account = request.account
        if response is None or account is None or request.method in SAFE_METHODS:
            return response
        assert self.accounts is not None
        try:
            self.accounts.record_audit(
                account.name,
                request.operation or request.method,
                request.path,
                response.status,
                request_id=request.request_id or None,
                source=request.peer,
            )
        except PipelineError:
            log.exception("could not record %s %s in the audit trail", request.method, request.path)
        return response


def _unauthorized(message: str) -> HTTPError:
    return HTTPError(
        401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="pipeline-core"'}
    )
