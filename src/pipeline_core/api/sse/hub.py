"""``StreamHub``: one thread writes every live event stream over non-blocking sockets.

A request thread checks the request, writes the headers and any replay, then hands its
connection here and ends, so 500 subscribers cost one thread, not 500 — and no per-stream
interpreter work competes with the engine. Deliveries from the event bus wake the hub, which
queues the (shared) bytes on each stream and writes what the socket accepts; a
stream whose backlog overflows, whose client hangs up, or whose server stops is closed.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline_core.api.sse.bus import Delivery, Subscription
from pipeline_core.api.transport.framing import LAST_CHUNK, chunk
from pipeline_core.events import Event

KEEPALIVE = b": keepalive\n\n"


IOV_MAX = 512  # buffers per sendmsg() call
#: Seconds a stopping server waits for a client to take the end of its stream.
END_WAIT = 0.2
#: Streams get new deliveries at most this often: an event after a quiet spell goes out at
#: once, a burst goes out in a few large writes instead of one small write per commit and
#: stream (which costs the server and every client a system call each).
BATCH_WINDOW = 0.02


@dataclass(eq=False)
class _Stream:
    sock: socket.socket
    subscription: Subscription
    sent: int
    encode: Callable[[Event], bytes]
    chunked: bool
    #: What is still to be written: shared delivery bytes (never copied per stream), the
    #: first one possibly a view past what the socket already took.
    out: list[bytes | memoryview] = field(default_factory=list)
    mask: int = selectors.EVENT_READ
    last_write: float = field(default_factory=time.monotonic)
    account: str | None = None


class StreamHub:
    def __init__(self, keepalive: float, batch_window: float = BATCH_WINDOW) -> None:
        self.keepalive = keepalive
        self.batch_window = batch_window
        self._last_round = 0.0
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._incoming: list[_Stream] = []
        self._ready: set[_Stream] = set()
        self._woken = False
        self._streams: dict[int, _Stream] = {}
        self._ending: set[str] = set()
        self._stopping = False
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="event-streams", daemon=True)
        self._thread.start()

    def attach(
        self,
        sock: socket.socket,
        subscription: Subscription,
        sent: int,
        encode: Callable[[Event], bytes],
        *,
        chunked: bool = False,
        account: str | None = None,
    ) -> None:
        """Take over ``sock`` (already past its headers and replay) from now on; with
        ``chunked``, every write is framed as one chunk of a chunked body. ``account``: the
        token it was opened with (``end_account`` ends it)."""
        stream = _Stream(sock, subscription, sent, encode, chunked, account=account)
        with self._lock:
            accepted = not self._stopped
            if accepted:
                sock.setblocking(False)
                subscription.on_ready = lambda: self._mark_ready(stream)
                self._incoming.append(stream)
                self._ready.add(stream)  # anything that arrived during the replay
        if accepted:
            self._wake()
        else:  # the server is stopping: end this stream now
            subscription.close()
            _end_body(stream)
            sock.close()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            self._stopped = True
            leftovers, self._incoming = self._incoming, []
        for stream in leftovers:
            stream.subscription.close()
            _end_body(stream)
            stream.sock.close()

    def end_account(self, name: str) -> None:
        """End the streams opened with token ``name`` (it was revoked)."""
        with self._lock:
            self._ending.add(name)
        self._wake()

    def _end_accounts(self) -> None:
        with self._lock:
            ending, self._ending = self._ending, set()
        for stream in list(self._streams.values()):
            if stream.account in ending:
                self._close(stream)

    def _mark_ready(self, stream: _Stream) -> None:
        with self._lock:
            self._ready.add(stream)
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._woken:
                return
            self._woken = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        while not self._stopping:
            for key, mask in self._selector.select(timeout=self._next_timeout()):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    with self._lock:
                        self._woken = False
                    continue
                stream: _Stream = key.data
                if mask & selectors.EVENT_READ and not self._peer_alive(stream):
                    self._close(stream)
                elif mask & selectors.EVENT_WRITE:
                    self._flush(stream)
            self._take_incoming()
            if self._ending:
                self._end_accounts()
            if time.monotonic() >= self._last_round + self.batch_window:
                self._last_round = time.monotonic()
                self._deliver_ready()
            self._send_keepalives()
        self._take_incoming()  # streams handed over while stopping are closed too
        for stream in list(self._streams.values()):
            self._close(stream)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _next_timeout(self) -> float:
        if self._ready:  # deliveries wait for the end of the batch window
            return max(0.0, self._last_round + self.batch_window - time.monotonic())
        return min(self.keepalive, 1.0)

    def _take_incoming(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
        for stream in incoming:
            self._streams[stream.sock.fileno()] = stream
            self._selector.register(stream.sock, selectors.EVENT_READ, stream)

    def _deliver_ready(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, set()
        for stream in ready:
            if stream.sock.fileno() not in self._streams:
                continue
            if stream.subscription.closed:
                self._close(stream)  # overflowed, or the server is stopping: the client resumes
                continue
            if stream.out:
                continue  # the client is behind: let its backlog grow where it is bounded
            delivery: Delivery | None = stream.subscription.get(timeout=0)
            if delivery is not None and delivery.events:
                events = delivery.events
                if events[0].seq > stream.sent:
                    _queue(stream, delivery.data)
                else:  # the seam after a replay
                    missed = [e for e in events if e.seq > stream.sent]
                    _queue(stream, b"".join(map(stream.encode, missed)))
                stream.sent = max(stream.sent, events[-1].seq)
                self._flush(stream)

    def _send_keepalives(self) -> None:
        now = time.monotonic()
        for stream in list(self._streams.values()):
            if not stream.out and now - stream.last_write >= self.keepalive:
                _queue(stream, KEEPALIVE)
                self._flush(stream)

    def _flush(self, stream: _Stream) -> None:
        out = stream.out
        try:
            while out:
                sent = stream.sock.sendmsg(out[:IOV_MAX])
                stream.last_write = time.monotonic()
                while out and sent >= len(out[0]):
                    sent -= len(out.pop(0))
                if sent:
                    out[0] = memoryview(out[0])[sent:]
                    break  # the socket's buffer is full
        except BlockingIOError:
            pass
        except OSError:
            self._close(stream)
            return
        if not out and stream.subscription.pending:
            with self._lock:
                self._ready.add(stream)  # more queued up while this was being written
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0)
        if mask != stream.mask:
            stream.mask = mask
            with contextlib.suppress(KeyError, ValueError):
                self._selector.modify(stream.sock, mask, stream)

    @staticmethod
    def _peer_alive(stream: _Stream) -> bool:
        try:
            return stream.sock.recv(4096) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _close(self, stream: _Stream) -> None:
        fd = stream.sock.fileno()
        if fd in self._streams:
            del self._streams[fd]
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(stream.sock)
        stream.subscription.close()
        if self._stopping or not stream.out:  # a client behind is not waited for
            _end_body(stream)
        with contextlib.suppress(OSError):
            stream.sock.shutdown(socket.SHUT_RDWR)
        stream.sock.close()


def _end_body(stream: _Stream) -> None:
    """End a chunked body as HTTP/1.1 says — what is still queued, then the last chunk — so
    that a client (a browser's EventSource) sees the stream end rather than a body cut
    short. A client that reads nothing is cut short after ``END_WAIT`` seconds."""
    if not stream.chunked:
        return
    with contextlib.suppress(OSError):
        stream.sock.settimeout(END_WAIT)
        for piece in stream.out:
            stream.sock.sendall(piece)
        stream.out.clear()
        stream.sock.sendall(LAST_CHUNK)


def _queue(stream: _Stream, data: bytes) -> None:
    if data:  # an empty chunk would end a chunked body
        stream.out.extend(chunk(data) if stream.chunked else (data,))
