"""Environment overrides of variables and connections, which win over the store (as in a
container that gets its settings from its environment), and the error a missing one raises.

``PIPELINE_CORE_VAR_<KEY>`` holds a variable: a value that parses as JSON is taken as JSON
(``5``, ``true``, ``{"a": 1}``), anything else as text. ``PIPELINE_CORE_CONN_<ID>`` holds a
connection as a URI. ``<KEY>`` and ``<ID>`` are written upper-case with ``.`` and ``-`` as
``_`` (``PIPELINE_CORE_VAR_API_BASE`` for ``api.base``); the exact spelling works too. Pure:
the environment is passed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pipeline_core.credentials.connections import (
    Connection,
    ConnectionError_,
    is_secret_key,
    secret_leaves,
)

VAR_PREFIX = "PIPELINE_CORE_VAR_"
CONN_PREFIX = "PIPELINE_CORE_CONN_"


class CredentialMissing(LookupError):
    """A variable or connection that neither the environment nor the store has."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def env_name(prefix: str, key: str) -> str:
    """The environment variable that overrides ``key``."""
    return prefix + re.sub(r"[.\-]", "_", key).upper()


class Overrides:
    """What the environment says about variables and connections."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._variables = _with_prefix(environ, VAR_PREFIX)
        self._connections = _with_prefix(environ, CONN_PREFIX)

    def variable(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` when the environment sets ``key``, else ``(False, None)``."""
        text = _lookup(self._variables, VAR_PREFIX, key)
        if text is None:
            return False, None
        return True, _value(text)

    def connection(self, conn_id: str) -> Connection | None:
        """The connection the environment sets for ``conn_id``; ``ConnectionError_`` naming
        the variable when its URI does not parse."""
        uri = _lookup(self._connections, CONN_PREFIX, conn_id)
        if uri is None:
            return None
        try:
            return Connection.from_uri(conn_id, uri)
        except ConnectionError_ as exc:
            raise ConnectionError_(f"{env_name(CONN_PREFIX, conn_id)}: {exc}") from None

    def secrets(self) -> list[str]:
        """Every secret the environment holds: values of variables whose names say secret,
        passwords of connections (a URI that does not parse: the whole text)."""
        found: list[str] = []
        for name, text in self._variables.items():
            if is_secret_key(name[len(VAR_PREFIX) :]):
                found += secret_leaves(_value(text))
        for name, uri in self._connections.items():
            try:
                password = Connection.from_uri(name[len(CONN_PREFIX) :] or "x", uri).password
            except ConnectionError_:
                found.append(uri)
                continue
            if password:
                found.append(password)
        return found


def _with_prefix(environ: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {name: value for name, value in environ.items() if name.startswith(prefix)}


def _lookup(found: Mapping[str, str], prefix: str, key: str) -> str | None:
    exact = found.get(prefix + key)
    return exact if exact is not None else found.get(env_name(prefix, key))


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
