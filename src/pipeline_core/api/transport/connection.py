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

from pipeline_core.api.http import Request, Response
from pipeline_core.api.transport.framing import error_response, response_head
from pipeline_core.api.transport.request_reader import Parsed, RequestReader

if TYPE_CHECKING:
    from pipeline_core.api.transport.server import LoopServer

log = logging.getLogger("pipeline_core.api")
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024 * 1024
STREAM_SNDBUF = 64 * 1024
#: Parsed requests waiting behind the one being handled before reading pauses.
MAX_PIPELINED = 8

Phase = Literal["idle", "head", "body", "handling", "lingering", "closed"]


class HTTPConnection(asyncio.Protocol):
    def __init__(self, server: LoopServer) -> None:
        self.server = server
        self.limits = server.limits
        self.phase: Phase = "idle"
        self._reader = RequestReader(self.limits.max_body_bytes)
        self._transport: asyncio.Transport | None = None
        #: When the current phase's deadline passes (monotonic seconds); the server's sweep
        #: closes connections past theirs (one timer for all, not one per request).
        self.expires: float | None = None
        self._keep_alive = False
        self._paused = False
        self._lingered = 0
        self.last_active = time.monotonic()
        self.peer: str | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
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
        self._reader.feed(data)
        self._advance()

    def eof_received(self) -> bool:
        if self.phase == "lingering":
            self._close()
            return False
        self._reader.end()
        self._advance()
        return True  # keep writing: a handler may still be answering

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = "closed"
        self.expires = None
        self.server.forget(self)

    # -- reading ---------------------------------------------------------------------------

    def _advance(self) -> None:
        """Hand over the next parsed request (or answer the refusal) unless one is being
        handled; otherwise follow what the reader is reading with the matching deadline."""
        reader = self._reader
        if self.phase == "handling":
            if len(reader.ready) >= MAX_PIPELINED and not self._paused:
                self._pause(True)
            return
        if self.phase in ("lingering", "closed"):
            return
        if reader.ready:
            item = reader.ready.popleft()
            if isinstance(item, Parsed):
                self._dispatch(item)
            else:
                self._refuse(item.status, item.code, item.message)
            return
        if reader.ended:
            self._close()
        elif reader.in_body:
            if self.phase != "body":
                self._enter("body", self.limits.body_timeout)
            if reader.wants_continue:
                reader.wants_continue = False
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        elif reader.in_head and self.phase != "head":
            self._enter("head", self.limits.head_timeout)

    def _pause(self, paused: bool) -> None:
        self._paused = paused
        if self._transport is not None and not self._transport.is_closing():
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def _dispatch(self, parsed: Parsed) -> None:
        self._keep_alive = parsed.keep_alive
        self._enter("handling", None)
        parsed.request.peer = self.peer
        answer = self.server.from_memory(parsed.request)
        if answer is not None:
            self._on_response(parsed.request, answer)
        else:
            self.server.run_handler(parsed.request, self._on_response)

    # -- writing ---------------------------------------------------------------------------

    def _on_response(self, request: Request, response: Response) -> None:
        """On the loop: write the handler's answer, then wait for the next request."""
        if self.phase != "handling" or self._transport is None:
            return  # the connection was closed while the handler ran
        close = not self._keep_alive or self.server.stopping
        streamed = response.handover is not None
        if streamed and request.method != "HEAD":
            self._hand_over(response, not close)
            return
        # HEAD gets the head a GET would, a stream's included, and never a body.
        body_allowed = request.method != "HEAD" and response.status not in (204, 304)
        try:
            head = response_head(
                response.status,
                response.headers,
                content_type=response.content_type if response.status != 304 else None,
                content_length=(
                    len(response.body) if response.status != 304 and not streamed else None
                ),
                close=close,
                chunked=streamed and not close,
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
        """Wait for the next request: one may be parsed already (pipelined), or begun."""
        self._enter("idle", self.limits.idle_timeout)
        self.server.idle(self)
        if self._paused:
            self._pause(False)
        self._advance()

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
