"""The bytes of our own responses: status line, headers, errors and chunks.

Responses are written here rather than through a library: one buffer per response (headers
and body together — split small writes on a keep-alive connection meet the client's delayed
ACK and cost ~40 ms a request), with a ``Date`` computed once a second. Requests are read by
``request_reader``.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

from pipeline_core.api.http import error_body

_REASONS = {status.value: status.phrase for status in HTTPStatus}


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
