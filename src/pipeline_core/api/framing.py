"""HTTP/1.1 wire rules beyond what the parser enforces, and the bytes of our own responses.

``h11`` parses requests and already refuses non-decimal or conflicting ``Content-Length``,
any ``Transfer-Encoding`` but ``chunked``, a missing ``Host`` on HTTP/1.1 and oversized heads.
It accepts, as RFC 9112 permits but does not require, what request smuggling relies on: two
equal ``Content-Length`` headers, ``Content-Length`` beside ``Transfer-Encoding``, a second
``Host`` and obsolete line folding. ``refusal`` reads the raw head and names any of these, so
the server can refuse the request before it is parsed, let alone executed.

Responses are written here rather than through the parser: one buffer per response (headers
and body together — split small writes on a keep-alive connection meet the client's delayed
ACK and cost ~40 ms a request), with a ``Date`` computed once a second.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from pipeline_core.api.http import error_body

#: The end of a request head (h11 also takes a bare LF as a line end).
HEAD_END = re.compile(rb"\r?\n\r?\n")
_FRAMING_HEADERS = (b"host", b"content-length", b"transfer-encoding")
_REASONS = {status.value: status.phrase for status in HTTPStatus}


def refusal(head: bytes | bytearray) -> str | None:
    """Why a complete request head (request line and header lines) must be refused, or
    ``None``: obsolete line folding, a repeated ``Host``, ``Content-Length`` or
    ``Transfer-Encoding``, or ``Content-Length`` and ``Transfer-Encoding`` together."""
    if b"\n " in head or b"\n\t" in head:
        return "obsolete line folding (a header line starting with white space)"
    # Every header line follows a line end, and the parser refuses white space before the
    # colon: counting "\nname:" counts the header (bytes methods: no loop in Python).
    lowered = head.lower()
    counts = {name: lowered.count(b"\n" + name + b":") for name in _FRAMING_HEADERS}
    for name, count in counts.items():
        if count > 1:
            return f"{name.decode()} appears {count} times"
    if counts[b"content-length"] and counts[b"transfer-encoding"]:
        return "Content-Length and Transfer-Encoding together"
    return None


class _Clock:
    """The ``Date`` header's value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True).encode()
        return self._value


http_date = _Clock()


def response_head(
    status: int,
    headers: dict[str, str],
    *,
    content_type: str | None,
    content_length: int | None,
    close: bool,
    chunked: bool = False,
) -> bytes:
    """Status line and headers. A header value with a line break is a bug in a handler; it
    raises ``ValueError`` rather than letting the value end the head early."""
    parts = [b"HTTP/1.1 %d %s\r\nDate: %s\r\n" % (status, _reason(status), http_date())]
    if content_type is not None:
        parts.append(b"Content-Type: %s\r\n" % content_type.encode("latin-1"))
    if content_length is not None:
        parts.append(b"Content-Length: %d\r\n" % content_length)
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    for name, value in headers.items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} has a line break in its value")
        parts.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> bytes:
    """A whole JSON error response that closes the connection."""
    body = error_body(code, message)
    head = response_head(
        status,
        headers or {},
        content_type="application/json; charset=utf-8",
        content_length=len(body),
        close=True,
    )
    return head + body


def chunk(data: bytes | memoryview) -> list[bytes | memoryview]:
    """``data`` as one chunk of a chunked body, in three buffers (``data`` is not copied)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


LAST_CHUNK = b"0\r\n\r\n"


def _reason(status: int) -> bytes:
    return _REASONS.get(status, "Unknown").encode()
