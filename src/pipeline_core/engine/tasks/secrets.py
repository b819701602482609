"""Variables, connections and secret masking for tries.

``Credentials`` is an executor's: it answers lookups (environment overrides first, then the
store) and keeps the ``Masker`` of every secret that exists, read again at most once per
``refresh`` seconds. ``TrySecrets`` is one try's: it starts with that masker, so everything
a try could see is masked from its first line, and adds any secret it looks up that the
masker does not know yet (one stored a moment ago). ``MaskedTaskData`` masks what a try
writes — log text and XCom values — before it reaches the store; the executor masks the
try's error. Everything else (events, SSE, API answers, notifications) is made from those.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipeline_core.credentials.connections import (
    Connection,
    ConnectionError_,
    is_secret_key,
    secret_leaves,
)
from pipeline_core.credentials.lookup import (
    CONN_PREFIX,
    VAR_PREFIX,
    CredentialMissing,
    Overrides,
    env_name,
)
from pipeline_core.credentials.masking import MIN_LENGTH, Masker
from pipeline_core.errors import NotFound, PipelineError
from pipeline_core.model import TaskKey
from pipeline_core.store.credentials import CredentialStore
from pipeline_core.store.parts import TaskDataStore
from pipeline_core.store.types import XComEntry

logger = logging.getLogger("pipeline_core.engine.secrets")


class Credentials:
    def __init__(
        self,
        store: CredentialStore | None,
        environ: Mapping[str, str] | None = None,
        *,
        refresh: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.overrides = Overrides(os.environ if environ is None else environ)
        self.refresh, self.monotonic = refresh, monotonic
        self._masker = Masker()
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def variable(self, key: str) -> tuple[Any, bool]:
        """``(value, is_secret)`` of variable ``key``; ``CredentialMissing`` naming it."""
        found, value = self.overrides.variable(key)
        if found:
            return value, is_secret_key(key)
        try:
            if self.store is not None:
                stored = self.store.get_variable(key)
                return stored.value, stored.is_secret
        except NotFound:
            pass
        raise CredentialMissing(
            f"variable '{key}' is not set (neither in the store nor {env_name(VAR_PREFIX, key)})"
        )

    def connection(self, conn_id: str) -> Connection:
        """Connection ``conn_id``; ``CredentialMissing`` naming it, ``ConnectionError_`` for
        an environment URI that does not parse."""
        found = self.overrides.connection(conn_id)
        if found is not None:
            return found
        try:
            if self.store is not None:
                return self.store.get_connection(conn_id).connection
        except NotFound:
            pass
        raise CredentialMissing(
            f"connection '{conn_id}' is not set "
            f"(neither in the store nor {env_name(CONN_PREFIX, conn_id)})"
        )

    def masker(self) -> Masker:
        """The masker of every secret in the environment and the store (at most
        ``refresh`` seconds old)."""
        if self.monotonic() - self._read_at < self.refresh:
            return self._masker
        with self._lock:
            if self.monotonic() - self._read_at >= self.refresh:
                self._read_at = self.monotonic()
                try:
                    found = self.overrides.secrets()
                    if self.store is not None:
                        found += self.store.secret_values()
                except PipelineError as exc:  # a key that does not open them: said at start
                    logger.warning("could not read the secrets to mask: %s", exc)
                    return self._masker
                if not set(found) <= self._masker.secrets | self._masker.too_short:
                    self._masker = Masker(self._masker.secrets | set(found))
        return self._masker


class TrySecrets:
    """One try's lookups and masking (a ``CredentialReader``)."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self.masker = credentials.masker() if credentials is not None else Masker()
        self._own = False  # the masker is this try's alone (it learnt a secret)

    def variable(self, key: str) -> Any:
        if self.credentials is None:
            raise CredentialMissing(f"variable '{key}' cannot be read here")
        value, secret = self.credentials.variable(key)
        if secret:
            self._learn(secret_leaves(value))
        return value

    def connection(self, conn_id: str) -> Connection:
        if self.credentials is None:
            raise CredentialMissing(f"connection '{conn_id}' cannot be read here")
        connection = self.credentials.connection(conn_id)
        if connection.password:
            self._learn([connection.password])
        return connection

    def lookup(self, kind: str, name: str) -> tuple[Any, str | None]:
        """``(value, None)`` or ``(None, why)``: a worker's question, answered."""
        try:
            if kind == "variable":
                return self.variable(name), None
            return self.connection(name), None
        except (CredentialMissing, ConnectionError_) as exc:
            return None, str(exc)

    def mask(self, text: str) -> str:
        return self.masker.mask(text)

    def mask_error(self, error: str | None) -> str | None:
        return None if error is None else self.masker.mask(error)

    def _learn(self, secrets: Iterable[str]) -> None:
        known = self.masker.secrets
        new = [s for s in secrets if len(s) >= MIN_LENGTH and s not in known]
        if not new:
            return
        if not self._own:
            self.masker, self._own = Masker(known), True
        self.masker.add(new)


class MaskedTaskData:
    """The part of the store a try writes to, with its secrets masked on the way."""

    def __init__(self, inner: TaskDataStore, secrets: TrySecrets) -> None:
        self.inner, self.secrets = inner, secrets

    def append_log(self, key: TaskKey, try_number: int, text: str) -> None:
        self.inner.append_log(key, try_number, self.secrets.masker.mask(text))

    def set_xcom(self, key: TaskKey, xcom_key: str, value: Any) -> XComEntry:
        return self.inner.set_xcom(key, xcom_key, self.secrets.masker.mask_value(value))

    def get_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry | None:
        return self.inner.get_xcom(key, xcom_key)

    def get_mapped_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry:
        return self.inner.get_mapped_xcom(key, xcom_key)
