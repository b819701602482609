"""``RequestReader``: a connection's bytes in, whole requests (or one refusal) out.

``httptools`` (the llhttp parser, in C) parses strictly: it refuses a ``Content-Length`` that
is not a plain decimal, a repeated ``Content-Length``, ``Content-Length`` beside
``Transfer-Encoding``, a ``Transfer-Encoding`` that does not end in ``chunked``, obsolete line
folding, white space before a colon, bare CR or LF line ends and control characters. The
rules it leaves to the server are kept here: one ``Host`` (required on HTTP/1.1), no coding
but ``chunked``, HTTP/1.0 or 1.1 only, and limits on the head (64 KiB, 100 lines) and the body.

A request is queued only when its whole body has arrived, so a request cut off by the end of
input is never executed. Requests pipelined behind it queue in order; the first refusal ends
reading, and is answered once the requests before it are.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import httptools

from pipeline_core.api.http import Request

MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
_FRAMING_HEADERS = ("host", "content-length", "transfer-encoding")


@dataclass(frozen=True, slots=True)
class Refusal:
    """An early error for the client, after which the connection lingers and closes."""

    status: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Parsed:
    """A whole request, and whether the connection may stay open after its answer."""

    request: Request
    keep_alive: bool


class _Stop(Exception):
    """Raised from a parser callback to stop parsing after a refusal was queued."""


class RequestReader:
    """Feed it what arrives; take ``ready`` items in order. ``in_head``/``in_body`` say what
    is being read now (for the connection's deadlines); ``ended`` that nothing more will be
    read (end of input, a refusal, or an upgrade request, which is answered and then closed)."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.ready: deque[Parsed | Refusal] = deque()
        self.in_head = False
        self.in_body = False
        self.ended = False
        #: The request being read asked for ``100 Continue`` before sending its body.
        self.wants_continue = False
        self._parser = httptools.HttpRequestParser(self)
        self._start_message()

    def _start_message(self) -> None:
        self._url = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._header_map: dict[str, str] = {}
        self._head_bytes = 0
        self._body = bytearray()
        self._keep_alive = True

    def feed(self, data: bytes) -> None:
        if self.ended:
            return
        if self.in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.ended = True  # the request was queued; what follows is another protocol
        except httptools.HttpParserInvalidMethodError:
            if not self.ended:
                self._refuse(501, "not_implemented", "unknown request method (or not HTTP at all)")
            return
        except httptools.HttpParserError as exc:
            if not self.ended:  # (a refusal from a callback has ended reading already)
                self._refuse(400, "invalid_request", f"malformed request: {exc}")
            return
        if self.in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_oversized_head()

    def end(self) -> None:
        """The client sent its last byte: a request begun and not finished is refused."""
        if self.ended:
            return
        if self.in_head or self.in_body:
            self._refuse(400, "invalid_request", "malformed request: the input ended mid-request")
        self.ended = True

    # -- parser callbacks (httptools calls these by name) -----------------------------------

    def on_message_begin(self) -> None:
        self._start_message()
        self.in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_HEAD_BYTES:
            self._stop(414, "invalid_request", "the request line is too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        self._head_bytes += len(name) + len(value)
        if len(self._headers) > MAX_HEADERS:
            self._stop(431, "invalid_request", f"more than {MAX_HEADERS} header lines")
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse_oversized_head()
            raise _Stop  # (from a callback: the parser must not go on)

    def on_headers_complete(self) -> None:
        self.in_head = False
        version = self._parser.get_http_version()
        if version not in ("1.0", "1.1"):
            self._stop(505, "invalid_request", f"HTTP/{version} is not supported")
        headers = self._header_map = dict(self._headers)
        reason = _framing_refusal(self._headers, headers, version)
        if reason is not None:
            self._stop(400, "invalid_request", f"malformed request: {reason}")
        length = int(headers.get("content-length", 0))
        if length > self.max_body_bytes:
            message = f"body of {length} bytes is over the {self.max_body_bytes}-byte limit"
            self._stop(413, "payload_too_large", message)
        self._keep_alive = version == "1.1" and not _wants_close(headers)
        if length or "transfer-encoding" in headers:
            self.in_body = True
            expect = headers.get("expect", "").lower()
            self.wants_continue = version == "1.1" and expect == "100-continue"

    def on_body(self, body: bytes) -> None:
        self._body += body
        if len(self._body) > self.max_body_bytes:  # a chunked body has no length up front
            self._stop(413, "payload_too_large", f"body over the {self.max_body_bytes}-byte limit")

    def on_message_complete(self) -> None:
        self.in_head = self.in_body = self.wants_continue = False
        target = bytes(self._url).decode("ascii", "replace")
        path, _, query = target.partition("?")
        method = self._parser.get_method().decode("ascii")
        request = Request(method, path, query, self._header_map, bytes(self._body))
        self.ready.append(Parsed(request, self._keep_alive))
        self._start_message()

    # -- refusals ---------------------------------------------------------------------------

    def _refuse_oversized_head(self) -> None:
        if not self._headers:
            self._refuse(414, "invalid_request", "the request line is too long")
        else:
            self._refuse(431, "invalid_request", f"request head over {MAX_HEAD_BYTES} bytes")

    def _refuse(self, status: int, code: str, message: str) -> None:
        self.ready.append(Refusal(status, code, message))
        self.in_head = self.in_body = self.wants_continue = False
        self.ended = True

    def _stop(self, status: int, code: str, message: str) -> None:
        self._refuse(status, code, message)
        raise _Stop


def _framing_refusal(
    pairs: list[tuple[str, str]], headers: dict[str, str], version: str
) -> str | None:
    """What the parser lets through that request smuggling or rebinding relies on."""
    for name in _FRAMING_HEADERS:
        count = sum(1 for header, _ in pairs if header == name)
        if count > 1:
            return f"{name} appears {count} times"
    if version == "1.1" and "host" not in headers:
        return "HTTP/1.1 request without a Host header"
    coding = headers.get("transfer-encoding")
    if coding is not None and coding.strip().lower() != "chunked":
        return f"unsupported Transfer-Encoding {coding!r} (only chunked)"
    return None


def _wants_close(headers: dict[str, str]) -> bool:
    connection = headers.get("connection")
    return connection is not None and "close" in (
        token.strip() for token in connection.lower().split(",")
    )
