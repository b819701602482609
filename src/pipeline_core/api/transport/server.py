"""``LoopServer``: an event-loop HTTP/1.1 server that hands each request to an app."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import queue
import resource
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import Request, Response, error_body
from pipeline_core.api.transport.connection import HTTPConnection
from pipeline_core.api.types import APIServerOptions

log = logging.getLogger("pipeline_core.api")
#: Connections the kernel completes while the loop is busy (a burst of clients — hundreds of
#: event streams reconnecting — would otherwise wait seconds in SYN retries); the kernel caps
#: it at net.core.somaxconn.
BACKLOG = 1024
STOP_WAIT = 5.0
ACCEPT_BATCH = 16
SWEEP = 0.1  # seconds between looks for connections past their deadline
PAUSE = 0.25  # seconds without accepting after EMFILE
Callback = Callable[[Request, Response], None]


class LoopServer:
    """One event loop owns every connection — accept, read, parse, keep-alive, write,
    deadlines — and a bounded pool of handler threads runs the routes, so an idle or slow
    connection costs a few KiB, not a thread.

    The port is bound at construction (``OSError`` if it cannot be); ``start(app)`` serves
    it on a thread. Above ``max_connections`` the longest-idle connection (waiting for, or
    reading, a request head) is closed to make room; when every connection is busy the
    newcomer gets 503 with ``Retry-After``. Running out of descriptors anyway (EMFILE) pauses
    accepting for a second instead of spinning.
    """

    def __init__(self, options: APIServerOptions) -> None:
        self.limits = options
        self.max_connections = options.max_connections or default_max_connections()
        self.app: Callable[[Request], Response] = _not_ready
        self.stopping = False
        self.connections: set[HTTPConnection] = set()
        #: Whether a sweep for connections past their deadline is due (only while any is open).
        self._sweeping = False
        self._idle: dict[HTTPConnection, None] = {}  # oldest first
        self._listener = _listen(options.host, options.port)
        self.port: int = self._listener.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_log_loop_error)
        self._pool = HandlerPool(options.handler_threads)
        self._thread = threading.Thread(target=self._run, name="api", daemon=True)
        self._stopped = threading.Event()
        self._stop_requested = asyncio.Event()

    def start(self, app: Callable[[Request], Response]) -> None:
        self.app = app
        self._pool.start()
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve_until_stopped())
        finally:
            self.loop.close()
            self._stopped.set()

    async def _serve_until_stopped(self) -> None:
        self.loop.add_reader(self._listener, self._accept)
        await self._stop_requested.wait()
        self.loop.remove_reader(self._listener)
        self.stopping = True
        for connection in list(self.connections):
            connection.close_idle()
        deadline = self.loop.time() + STOP_WAIT
        while any(c.phase != "closed" for c in self.connections) and self.loop.time() < deadline:
            await asyncio.sleep(0.01)  # handlers finish their answers
        for connection in list(self.connections):
            connection.close_idle()
        await asyncio.sleep(0)  # let the transports close

    def stop(self) -> None:
        if not self._thread.is_alive():  # bound, never served
            self._listener.close()
            return
        self.loop.call_soon_threadsafe(self._stop_requested.set)
        self._stopped.wait(STOP_WAIT * 2)
        self._thread.join(timeout=STOP_WAIT)
        self._pool.shutdown(STOP_WAIT)
        self._listener.close()

    def _sweep(self) -> None:
        """Close every connection past its deadline, then look again in ``SWEEP`` seconds
        while connections are open (a server without any sleeps)."""
        now = time.monotonic()
        for connection in [c for c in self.connections if c.expires is not None]:
            if connection.expires is not None and connection.expires <= now:
                connection.timed_out()
        self._sweeping = bool(self.connections) and not self.stopping
        if self._sweeping:
            self.loop.call_later(SWEEP, self._sweep)

    def _accept(self) -> None:
        """Accept a few connections per wake-up: each is admitted (or makes room) before the
        next batch, so descriptors stay near ``max_connections`` even when hundreds wait in
        the kernel's queue."""
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting(exc)
                return
            self.loop.create_task(self._connect(sock))

    async def _connect(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            await self.loop.connect_accepted_socket(lambda: HTTPConnection(self), sock)
        except OSError:  # reset before it was set up
            sock.close()

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors: free a few held by idle connections and stop accepting for a
        moment (waiting connections stay in the kernel's queue) instead of spinning on a
        listener that stays readable."""
        log.warning(
            "cannot accept connections (%s): closing the longest-idle ones and pausing %.2f s",
            exc.strerror,
            PAUSE,
        )
        for connection in list(self._idle)[:ACCEPT_BATCH]:
            connection.close_idle()
        self.loop.remove_reader(self._listener)
        self.loop.call_later(PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if not self.stopping:
            self.loop.add_reader(self._listener, self._accept)

    # -- called by connections, on the loop ------------------------------------------------

    def admit(self, connection: HTTPConnection) -> bool:
        """Count a new connection in, making room if needed; ``False`` if it was refused."""
        if len(self.connections) >= self.max_connections:
            oldest = next(iter(self._idle), None)
            if oldest is None:
                connection.refuse_for_capacity(retry_after=1)
                return False
            oldest.close_idle()
            self.forget(oldest)
        self.connections.add(connection)
        self._idle[connection] = None
        if not self._sweeping:
            self._sweeping = True
            self.loop.call_later(SWEEP, self._sweep)
        return True

    def busy(self, connection: HTTPConnection) -> None:
        self._idle.pop(connection, None)

    def idle(self, connection: HTTPConnection) -> None:
        self._idle.pop(connection, None)
        self._idle[connection] = None

    def forget(self, connection: HTTPConnection) -> None:
        self.connections.discard(connection)
        self._idle.pop(connection, None)

    def from_memory(self, request: Request) -> Response | None:
        """The app's answer if it can give one on the loop without waiting (see
        ``App.from_memory``); ``None`` otherwise."""
        answer_from_memory = getattr(self.app, "from_memory", None)
        return answer_from_memory(request) if answer_from_memory is not None else None

    def run_handler(self, request: Request, callback: Callback) -> None:
        """Run the app on a handler thread; ``callback(request, response)`` on the loop."""
        try:
            self._pool.submit(self._handle, request, callback)
        except RuntimeError:  # the pool is shut down: the server is stopping
            stopping = Response(503, error_body("unavailable", "the server is stopping"))
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(callback, request, stopping)

    def _handle(self, request: Request, callback: Callback) -> None:
        try:
            response = self.app(request)
        except Exception:  # the app's own error handling failed: still answer the client
            log.exception("the API failed to answer request %s", request.request_id)
            message = f"internal error; quote request id {request.request_id} when reporting it"
            response = Response(500, error_body("internal", message))
        if response.later is not None:  # held: its route runs again once it is woken
            response.later(lambda reason: self._resume(request, reason, callback))
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to answer
            self.loop.call_soon_threadsafe(callback, request, response)

    def _resume(self, request: Request, reason: str, callback: Callback) -> None:
        request.woken = reason
        self.run_handler(request, callback)

    def run_blocking(self, sock: socket.socket, function: Callable[..., None], *args: Any) -> None:
        """Run ``function(sock, *args)`` on a handler thread (an event stream's start, which
        replays stored events with blocking writes); ``sock`` is closed if it fails."""
        sock.settimeout(self.limits.socket_timeout)
        try:
            self._pool.submit(_owning, sock, function, *args)
        except RuntimeError:  # stopping
            sock.close()


class HandlerPool:
    """Fixed threads taking calls from one queue: cheaper per call than an executor's futures,
    which matters when every request crosses from the loop to a handler and back."""

    def __init__(self, size: int) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"api-handler-{i}", daemon=True)
            for i in range(size)
        ]
        self._closed = False

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., None], *args: Any) -> None:
        """Queue ``function(*args)``; ``RuntimeError`` once the pool is shut down."""
        if self._closed:
            raise RuntimeError("the handler pool is shut down")
        self._calls.put((function, args))

    def shutdown(self, timeout: float) -> None:
        """Run what is queued, then end every thread (waiting ``timeout`` at most)."""
        self._closed = True
        for _ in self._threads:
            self._calls.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            function, args = call
            try:
                function(*args)
            except Exception:
                log.exception("an API handler call failed")


def default_max_connections() -> int:
    """Half the process's descriptor limit: the rest stays for the store, the engine's
    workers, the scheduler's folder scans and event streams."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(16, soft // 2)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _owning(sock: socket.socket, function: Callable[..., None], *args: Any) -> None:
    try:
        function(sock, *args)
    except Exception as exc:
        if not isinstance(exc, OSError):  # not just a client that went away
            log.exception("handing a connection over failed")
        with contextlib.suppress(OSError):
            sock.close()


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exception = context.get("exception")
    log.error("API event loop: %s", context.get("message"), exc_info=exception)


def _not_ready(request: Request) -> Response:
    return Response(503, error_body("unavailable", "the server is starting"))
