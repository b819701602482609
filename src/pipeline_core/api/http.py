"""Small request/response values and the one HTTP error type handlers raise."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

from pipeline_core.credentials.accounts import Account


class HTTPError(Exception):
    """An error response: status, stable code, message, optional details and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or {}
        self.headers = headers or {}


def bad_request(message: str, **details: Any) -> HTTPError:
    return HTTPError(400, "invalid_request", message, details=details)


@dataclass
class Request:
    """A parsed request. The JSON body is decoded on first access of ``json``."""

    method: str
    path: str
    query_string: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    #: Set when a held request is handed back to its route (see ``Response.later``): why
    #: it was woken (``api.waits``: ended, timed_out, stopping).
    woken: str | None = None
    #: When it arrived (monotonic seconds), for routes whose answer may be held.
    arrived: float = field(default_factory=time.monotonic, compare=False)
    #: Who sent it (``host:port``), and the account its token names (``None``: the server
    #: asks for no token, or the route needs none).
    peer: str | None = field(default=None, compare=False)
    account: Account | None = field(default=None, compare=False)
    #: The operation of the route it reached (``trigger_run``), for the audit trail.
    operation: str | None = field(default=None, compare=False)
    #: The route's parameters and body fields, typed and validated by its operation's
    #: checks (``api.openapi.checks``) before the handler runs.
    args: dict[str, Any] = field(default_factory=dict, compare=False)
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def query(self) -> dict[str, list[str]]:
        try:
            return parse_qs(
                self.query_string, keep_blank_values=True, strict_parsing=False, max_num_fields=200
            )
        except ValueError as exc:
            raise bad_request(f"invalid query string: {exc}") from None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    @cached_property
    def json(self) -> Any:
        """The body as JSON (``None`` when empty); 415 unless it is ``application/json`` and
        not content-encoded; 400 for malformed JSON, a repeated key or nesting over
        ``MAX_JSON_DEPTH``."""
        if not self.body:
            return None
        content_type = (self.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HTTPError(
                415,
                "unsupported_media_type",
                f"the body must be application/json, got {content_type or 'no Content-Type'}",
            )
        encoding = (self.header("content-encoding") or "identity").strip().lower()
        if encoding != "identity":
            raise HTTPError(
                415,
                "unsupported_media_type",
                f"Content-Encoding {encoding!r} is not accepted; send the body as it is",
            )
        try:
            value = json.loads(self.body, object_pairs_hook=_no_repeated_keys)
        except RecursionError:
            raise bad_request(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(f"malformed JSON body: {exc}") from None
        problem = _problem_in(value)
        if problem is not None:
            message, details = problem
            raise bad_request(message, **details)
        return value


MAX_JSON_DEPTH = 64


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        repeated = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise ValueError(f"key {repeated!r} appears more than once")
    return value


def _problem_in(value: Any) -> tuple[str, dict[str, str]] | None:
    """What makes a parsed body unusable, in one walk without recursion: nesting deeper than
    ``MAX_JSON_DEPTH``, or a key or string no store keeps as text (a lone UTF-16 surrogate,
    which UTF-8 cannot encode, or a NUL, which PostgreSQL refuses) — the message and its
    details, the string's place named as a path such as ``conf.x[2]``; ``None`` if none."""
    pending: list[tuple[Any, str, int]] = [(value, "", 0)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, str):
            if not _storable(item):
                return _unstorable(path or "the top level")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth + 1 > MAX_JSON_DEPTH:
            return f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", {}
        if isinstance(item, list):
            pending.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
            continue
        for key, child in item.items():
            if not _storable(key):
                return _unstorable(f"a key of {path or 'the top level'}")
            pending.append((child, f"{path}.{key}" if path else key, depth + 1))
    return None


def _unstorable(where: str) -> tuple[str, dict[str, str]]:
    message = (
        f"the JSON body holds a string that is not storable text at {where}: "
        "a lone surrogate escape (\\ud800-\\udfff) or a NUL (\\u0000)"
    )
    return message, {"field": where}


def _storable(text: str) -> bool:
    if "\0" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"
    #: A streamed body (Server-Sent Events): the server sends the head, then hands the
    #: connection to this with whether the body must be chunked (HTTP/1.1) or not (1.0).
    handover: Callable[[socket.socket, bool], None] | None = None
    #: A held request (no answer yet): the server calls this with ``resume``; whoever holds
    #: it calls ``resume(reason)`` once, from any thread, and the server runs the request's
    #: route again with ``Request.woken = reason``. No thread waits meanwhile.
    later: Callable[[Callable[[str], None]], None] | None = None

    def copy(self) -> Response:
        """A copy whose headers can be changed without touching this one (kept answers)."""
        return Response(self.status, self.body, dict(self.headers), self.content_type)


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON. Text that UTF-8 cannot carry (a lone surrogate a message quotes)
    is sent as JSON escapes instead, so an answer can always be encoded."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def envelope(
    data: Any,
    meta: dict[str, Any] | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The success envelope ``{"data": ..., "meta": {...}}``."""
    payload: dict[str, Any] = {"data": data}
    if meta is not None:
        payload["meta"] = meta
    return Response(status, json_bytes(payload), dict(headers or {}))


def listing(data: list[Any], total: int, limit: int, offset: int) -> Response:
    """A page of a list, with the ``meta`` every list answer carries."""
    has_more = offset + len(data) < total
    return envelope(data, {"total": total, "limit": limit, "offset": offset, "has_more": has_more})


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    return json_bytes(
        {"data": None, "error": {"code": code, "message": message, "details": details or {}}}
    )
