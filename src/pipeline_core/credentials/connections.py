"""Connections and variables, the pure part: a connection's fields and its URI form
(``postgresql://login:password@host:5432/schema?sslmode=require``, as Airflow writes them),
and which variables hold secrets. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

#: Connection and variable ids: letters, digits, ``_``, ``-`` and ``.``.
ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")
#: A variable whose key holds one of these is a secret (encrypted, masked, answered masked).
SECRET_WORDS = ("password", "secret", "token", "key", "passwd", "credential", "private")
FIELDS = ("conn_type", "host", "port", "login", "password", "schema", "extra")


class ConnectionError_(ValueError):
    """A connection or its URI that does not hold together, saying what is wrong."""


def is_secret_key(key: str) -> bool:
    """Whether a variable named ``key`` is a secret by its name alone."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def secret_leaves(value: Any) -> list[str]:
    """The texts a secret value shows as: its strings and numbers, at any depth."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        return [str(value)]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [text for item in items for text in secret_leaves(item)]


@dataclass(frozen=True, slots=True)
class Connection:
    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not ID.fullmatch(self.conn_id):
            raise ConnectionError_(f"invalid connection id {self.conn_id!r:.60}: use letters, "
                                   "digits, '_', '-' and '.'")  # fmt: skip
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-_]{0,63}", self.conn_type or ""):
            raise ConnectionError_(f"invalid connection type {self.conn_type!r:.60}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConnectionError_(f"port {self.port} is not from 1 to 65535")
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled with ``extra`` as a plain dict (a worker asks the engine for one)."""
        fields = (self.conn_id, self.conn_type, self.host, self.port, self.login,
                  self.password, self.schema, dict(self.extra))  # fmt: skip
        return Connection, fields

    @classmethod
    def from_uri(cls, conn_id: str, uri: str) -> Connection:
        """The connection a URI states; ``ConnectionError_`` naming what does not parse."""
        if not isinstance(uri, str) or "://" not in uri:
            raise ConnectionError_(f"connection URI {uri!r:.60} needs a scheme, such as "
                                   "postgresql://user:password@host:5432/db")  # fmt: skip
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError as exc:
            raise ConnectionError_(f"connection URI does not parse: {exc}") from None
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        return cls(
            conn_id,
            parts.scheme.replace("-", "_"),
            unquote(parts.hostname) if parts.hostname else None,
            port,
            unquote(parts.username) if parts.username is not None else None,
            unquote(parts.password) if parts.password is not None else None,
            path or None,
            dict(parse_qsl(parts.query, keep_blank_values=True)),
        )

    def to_uri(self) -> str:
        auth = ""
        if self.login is not None or self.password is not None:
            auth = quote(self.login or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = self.host or ""
        port = f":{self.port}" if self.port is not None else ""
        schema = f"/{quote(self.schema, safe='')}" if self.schema else ""
        query = f"?{urlencode(dict(self.extra))}" if self.extra else ""
        return f"{self.conn_type.replace('_', '-')}://{auth}{host}{port}{schema}{query}"

    def value(self, path: tuple[str, ...]) -> Any:
        """A field for a template (``host``, ``port``, ``extra.sslmode``, ``uri``, ...);
        ``KeyError`` naming what the connection does not have."""
        if not path:
            raise KeyError("a connection template names a field, such as conn.<id>.host")
        name, rest = path[0], path[1:]
        if name == "uri" and not rest:
            return self.to_uri()
        if name == "extra" and rest:
            if rest[0] not in self.extra:
                raise KeyError(f"connection '{self.conn_id}' has no extra '{rest[0]}'")
            return self.extra[rest[0]]
        if name not in FIELDS or rest:
            raise KeyError(f"connection '{self.conn_id}' has no field '{'.'.join(path)}'")
        return getattr(self, name)
