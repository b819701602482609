"""``HTTPConnection``: one client connection, driven by the server's event loop.

A connection is always in one phase, with at most one deadline: waiting for a request
(``idle``: the keep-alive timeout, or the head deadline on a new connection), reading a head
(``head``: the head deadline, from its first byte), reading a body (``body``: the body
deadline), running a handler (no deadline: the handler pool is bounded, and the client may
wait), or lingering after an early error (reading and dropping what the client still sends,
bounded in time and bytes, so it reads the error instead of a reset). A request is handed to
a handler only when its whole body has arrived: a truncated request is never executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import h11

from pipeline_core.api.framing import HEAD_END, error_response, refusal, response_head
from pipeline_core.api.http import Request, Response

if TYPE_CHECKING:
    from pipeline_core.api.server import LoopServer

log = logging.getLogger("pipeline_core.api")
MAX_HEADERS = 100
MAX_HEAD_BYTES = 64 * 1024
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024 * 1024
STREAM_SNDBUF = 64 * 1024

Phase = Literal["idle", "head", "body", "handling", "lingering", "closed"]


class HTTPConnection(asyncio.Protocol):
    def __init__(self, server: LoopServer) -> None:
        self.server = server
        self.limits = server.limits
        self.phase: Phase = "idle"
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        #: When the current phase's deadline passes (monotonic seconds); the server's sweep
        #: closes connections past theirs (one timer for all, not one per request).
        self.expires: float | None = None
        self._head_checked = False
        #: What arrived of the current request head, until it is checked; whether input ended.
        self._unchecked = bytearray()
        self._ended = False
        self._request: h11.Request | None = None
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._lingered = 0
        self.last_active = time.monotonic()

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.admit(self):
            return
        self._deadline(self.limits.head_timeout)

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        if self.phase == "lingering":
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES:
                self._close()
            return
        if self.phase == "idle":
            self._enter("head", self.limits.head_timeout)
        if not self._head_checked:
            self._unchecked += data
        self._parser.receive_data(data)
        self._advance()

    def eof_received(self) -> bool:
        if self.phase == "lingering":
            self._close()
            return False
        self._ended = True
        self._parser.receive_data(b"")
        self._advance()
        return True  # keep writing: a handler may still be answering

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = "closed"
        self.expires = None
        self.server.forget(self)

    # -- reading ---------------------------------------------------------------------------

    def _advance(self) -> None:
        """Take parser events until one needs more data, or a request is handed over."""
        while self.phase in ("idle", "head", "body"):
            if not self._head_checked and not self._check_head():
                return
            try:
                event = self._parser.next_event()
            except h11.RemoteProtocolError as exc:
                status = 431 if exc.error_status_hint == 431 else 400
                self._refuse(status, "invalid_request", f"malformed request: {exc}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._on_head(event)
            elif isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()

    def _check_head(self) -> bool:
        """Refuse a head the parser would accept but framing rules forbid (see ``refusal``)
        before the parser reads it; ``False`` while the head is still incomplete."""
        buffered = self._unchecked
        end = HEAD_END.search(buffered)
        if (end.start() if end else len(buffered)) > MAX_HEAD_BYTES:
            line_end = buffered.find(b"\n")
            if line_end == -1 or line_end > MAX_HEAD_BYTES:
                self._refuse(414, "invalid_request", "the request line is too long")
            else:
                self._refuse(431, "invalid_request", f"request head over {MAX_HEAD_BYTES} bytes")
            return False
        if end is None:
            return self._ended  # at the end of input, the parser reports the truncated head
        reason = refusal(buffered[: end.start()])
        if reason is not None:
            self._refuse(400, "invalid_request", f"malformed request: {reason}")
            return False
        self._head_checked, self._unchecked = True, bytearray()
        return True

    def _on_head(self, request: h11.Request) -> None:
        self._request = request
        pairs = list(request.headers)
        if len(pairs) > MAX_HEADERS:
            self._refuse(431, "invalid_request", f"more than {MAX_HEADERS} header lines")
            return
        # Names are lower case; framing headers appear once (see ``refusal``).
        self._headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in pairs}
        length_header = self._headers.get("content-length")
        length = int(length_header) if length_header is not None else None
        limit = self.limits.max_body_bytes
        if length is not None and length > limit:
            message = f"body of {length} bytes is over the {limit}-byte limit"
            self._refuse(413, "payload_too_large", message)
            return
        if not length and "transfer-encoding" not in self._headers:
            return  # no body: the end of the message follows at once
        self._enter("body", self.limits.body_timeout)
        if self._parser.they_are_waiting_for_100_continue:
            self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _on_data(self, data: bytes) -> None:
        self._body += data
        limit = self.limits.max_body_bytes
        if len(self._body) > limit:  # a chunked body has no length up front
            self._refuse(413, "payload_too_large", f"body over the {limit}-byte limit")

    def _dispatch(self) -> None:
        assert self._request is not None
        event = self._request
        target = event.target.decode("ascii", "replace")
        path, _, query = target.partition("?")
        request = Request(
            event.method.decode("ascii"), path, query, self._headers, bytes(self._body)
        )
        self._enter("handling", None)
        answer = self.server.from_memory(request)
        if answer is not None:
            self._on_response(request, answer)
        else:
            self.server.run_handler(request, self._on_response)

    # -- writing ---------------------------------------------------------------------------

    def _on_response(self, request: Request, response: Response) -> None:
        """On the loop: write the handler's answer, then wait for the next request."""
        if self.phase != "handling" or self._transport is None:
            return  # the connection was closed while the handler ran
        assert self._request is not None
        close = self._parser.their_http_version != b"1.1" or _wants_close(self._headers)
        close = close or self.server.stopping
        if response.handover is not None:
            self._hand_over(response, not close)
            return
        body_allowed = request.method != "HEAD" and response.status not in (204, 304)
        try:
            head = response_head(
                response.status,
                response.headers,
                content_type=response.content_type if response.status != 304 else None,
                content_length=len(response.body) if response.status != 304 else None,
                close=close,
            )
        except ValueError:
            log.exception("a handler answered an unusable header")
            self._write(error_response(500, "internal", "the server built an invalid header"))
            self._close()
            return
        self._write(head + response.body if body_allowed else head)
        if close:
            self._close()
        else:
            self._next_cycle()

    def _hand_over(self, response: Response, chunked: bool) -> None:
        """Give the connection to ``response.handover`` (event streams) with its head sent:
        the socket leaves the loop, and the handover owns a duplicate of its descriptor."""
        assert self._transport is not None and response.handover is not None
        head = response_head(
            response.status,
            response.headers,
            content_type=response.content_type,
            content_length=None,
            close=not chunked,
            chunked=chunked,
        )
        sock = self._transport.get_extra_info("socket")
        if self._transport.get_write_buffer_size():  # an earlier answer is still unsent
            self._close()
            return
        try:
            kept = socket.socket(fileno=socket.dup(sock.fileno()))
        except OSError:
            self._close()
            return
        # A fixed, modest kernel buffer per stream: a subscriber that stops reading is noticed
        # (its queue fills and it is dropped) instead of parking megabytes in the kernel.
        with contextlib.suppress(OSError):
            kept.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        self.phase = "closed"
        self.expires = None
        self._transport.abort()  # closes the loop's descriptor only; no FIN while ``kept`` lives
        self.server.run_blocking(kept, start_stream, head, response.handover, chunked)

    def _next_cycle(self) -> None:
        """A new parser per request (responses are written without it), given what the
        client has sent already."""
        buffered, closed = self._parser.trailing_data
        self._parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        if buffered:  # (an empty receive_data() means end of input)
            self._parser.receive_data(buffered)
        if closed:
            self._parser.receive_data(b"")
        self._request, self._body, self._head_checked = None, bytearray(), False
        self._unchecked = bytearray(buffered)
        self._enter("head" if buffered else "idle", self._idle_or_head_timeout(buffered))
        self.server.idle(self)
        self._advance()  # a pipelined request may be waiting already

    def _idle_or_head_timeout(self, buffered: bytes) -> float:
        return self.limits.head_timeout if buffered else self.limits.idle_timeout

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- errors, deadlines and closing -----------------------------------------------------

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer an early error, half-close and linger (see the module docstring)."""
        self._write(error_response(status, code, message))
        self._linger()

    def _linger(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._enter("lingering", LINGER_SECONDS)
        if transport.can_write_eof():
            transport.write_eof()
        else:
            self._close()

    def refuse_for_capacity(self, retry_after: int) -> None:
        message = "the server has too many open connections; retry shortly"
        self._write(error_response(503, "unavailable", message, {"Retry-After": str(retry_after)}))
        self._close()

    def _enter(self, phase: Phase, timeout: float | None) -> None:
        """Move to ``phase`` with a new deadline. Reading a body or running a handler makes
        the connection busy; otherwise the server may close it to make room for another."""
        self.phase = phase
        self._deadline(timeout)
        if phase in ("body", "handling"):
            self.server.busy(self)

    def _deadline(self, timeout: float | None) -> None:
        self.expires = time.monotonic() + timeout if timeout is not None else None

    def timed_out(self) -> None:
        """Called by the server's sweep once ``expires`` has passed."""
        self.expires = None
        if self.phase in ("head", "body"):
            what = "request head" if self.phase == "head" else "request body"
            self._write(error_response(408, "request_timeout", f"the {what} took too long"))
        self._close()  # an idle keep-alive connection, or a lingering one, just closes

    def close_idle(self) -> None:
        """Close if no request is being read or handled (server stop, or room for others)."""
        if self.phase in ("idle", "head", "lingering"):
            self._close()

    def _close(self) -> None:
        self.phase = "closed"
        self.expires = None
        if self._transport is not None:
            self._transport.close()


def start_stream(
    sock: socket.socket,
    head: bytes,
    handover: Callable[[socket.socket, bool], None],
    chunked: bool,
) -> None:
    """On a handler thread: send the head, then let the stream backend take the socket."""
    sock.sendall(head)
    handover(sock, chunked)


def _wants_close(headers: dict[str, str]) -> bool:
    connection = headers.get("connection")
    return connection is not None and "close" in (
        token.strip() for token in connection.lower().split(",")
    )
