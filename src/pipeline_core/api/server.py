"""``APIServer``: the standard library's threading HTTP server, HTTP/1.1 keep-alive.

Responses are written in one buffered write (headers and body together): split small writes
on a keep-alive connection meet the client's delayed ACK and cost ~40 ms per request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline_core.api.cache import ViewCache
from pipeline_core.api.http import Request, Response, error_body
from pipeline_core.api.routes.builder import build_app
from pipeline_core.api.sse import EventStreams
from pipeline_core.api.stream_process import ProcessStreams
from pipeline_core.api.streams import ThreadStreams
from pipeline_core.store.tail import EventTail
from pipeline_core.store.types import Event

MAX_HEADERS = 100
STREAM_SNDBUF = 64 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins every connection thread
    allow_reuse_address = True
    # Connections the kernel completes while the accept loop is busy (the default, 5, makes
    # a burst of clients — hundreds of event streams reconnecting — wait seconds in SYN
    # retries); the kernel caps it at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], app: Callable[[Request], Response], options: Any
    ) -> None:
        self.app, self.options = app, options
        self.connections: set[socket.socket] = set()
        self.handed_over: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
            handed_over = request in self.handed_over
            self.handed_over.discard(request)
        if handed_over:  # a live stream lives on in the hub: close this descriptor only
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alive ones included) so it can end."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    wbufsize = -1  # buffered: one write per response

    def setup(self) -> None:
        self.request.settimeout(self.server.options.socket_timeout)
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # the app logs requests itself
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found while parsing the request line and headers (bad request line, URI too
        long, header flood) also get the JSON error envelope, and the connection closes."""
        self.close_connection = True
        code_name = {400: "invalid_request", 414: "invalid_request", 431: "invalid_request"}
        body = error_body(code_name.get(code, "invalid_request"), message or "malformed request")
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)
        self.wfile.flush()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def _serve(self) -> None:
        if len(self.headers) > MAX_HEADERS:
            self.close_connection = True
            self._send(Response(431, error_body("invalid_request", "too many headers")))
            return
        length_header = self.headers.get("Content-Length")
        try:
            length = int(length_header) if length_header else 0
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._send(Response(400, error_body("invalid_request", "invalid Content-Length")))
            return
        if length > self.server.options.max_body_bytes:
            limit = self.server.options.max_body_bytes
            message = f"body of {length} bytes is over the {limit}-byte limit"
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._send(Response(413, error_body("payload_too_large", message)))
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(
                Response(
                    411,
                    error_body(
                        "invalid_request", "send a Content-Length; chunked bodies are not accepted"
                    ),
                )
            )
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self._send(self.server.app(Request(self.command, path, query, headers, body)))

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_OPTIONS = do_HEAD = _serve

    def __getattr__(self, name: str) -> Any:
        """Every other method (TRACE, CONNECT, made-up ones) goes to the app too, which
        answers 405 with ``Allow`` on a known path and 404 elsewhere (not 501)."""
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _send(self, response: Response) -> None:
        if response.stream is not None:
            self._send_stream(response)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()

    def _send_stream(self, response: Response) -> None:
        """Headers, then each chunk flushed as it comes; the connection ends with the stream."""
        assert response.stream is not None
        self.close_connection = True
        # A fixed, modest kernel buffer per stream: a subscriber that stops reading is noticed
        # (its queue fills and it is dropped) instead of parking megabytes in the kernel.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.flush()
            for chunk in response.stream:
                self.wfile.write(chunk)
                self.wfile.flush()
            if response.handover is not None:
                kept = self.connection.dup()
                try:
                    response.handover(kept)
                except BaseException:
                    kept.close()
                    raise
                with self.server.connections_lock:
                    self.server.handed_over.add(self.connection)
        except (OSError, ValueError):
            pass  # the client went away
        finally:
            close = getattr(response.stream, "close", None)
            if close is not None:
                close()


class HTTPServerHandle:
    """Binds the port at once (``OSError`` if it cannot); ``start(app)`` serves it on a
    thread. ``port`` is the bound port (useful with port 0)."""

    def __init__(self, options: Any) -> None:
        self._server = _Server((options.host, options.port), _not_ready, options)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="api",
            daemon=True,
        )

    def start(self, app: Callable[[Request], Response]) -> None:
        self._server.app = app
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():  # bound, never served
            self._server.server_close()
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)


def _not_ready(request: Request) -> Response:
    return Response(503, error_body("unavailable", "the server is starting"))


class APIServer:
    """The REST API: ``bind()`` (optional: take the port before anything else starts),
    ``start()`` / ``stop()``, or use it as a context manager."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.cache = ViewCache()
        self.streams: EventStreams | None = None
        self._handle: HTTPServerHandle | None = None
        self._tail: EventTail | None = None

    @property
    def port(self) -> int:
        assert self._handle is not None, "the server is not started"
        return self._handle.port

    def bind(self) -> APIServer:
        """Take the port now (``OSError`` if it is in use); ``start`` serves it later."""
        if self._handle is None:
            self._handle = HTTPServerHandle(self.options)
        return self

    def start(self, port: int | None = None) -> APIServer:
        if port is not None:
            self.options.port = port
        self.bind()
        assert self._handle is not None
        self.streams = self._event_streams()
        app = build_app(self.options, self.cache, self.streams)
        # Events reach the cache and the stream from this process's own commits, and — when
        # the engine runs elsewhere — from following the store's event log.
        if self.options.follow_other_processes:
            self._tail = EventTail(self.options.store, self._on_events).start()
        else:
            self.options.store.add_listener(self._on_events)
        self._handle.start(app)
        return self

    def _event_streams(self) -> EventStreams:
        options = self.options
        if options.event_streams == "process":
            if not options.database_url:
                raise ValueError("event_streams='process' needs the database_url to follow")
            return ProcessStreams(
                options.database_url,
                options.sse_keepalive,
                options.sse_queue_size,
                options.socket_timeout,
            )
        return ThreadStreams(options.store, options.sse_keepalive, options.sse_queue_size)

    def _on_events(self, events: list[Event]) -> None:
        self.cache.on_events(events)
        if self.streams is not None:
            self.streams.publish(events)

    def stop(self) -> None:
        """Ends every event stream, frees the port and leaves no thread behind."""
        if self._handle is None:
            return
        if self._tail is not None:
            self._tail.stop()
            self._tail = None
        else:
            self.options.store.remove_listener(self._on_events)
        if self.streams is not None:
            self.streams.stop()
        self._handle.stop()
        self._handle = None

    def __enter__(self) -> APIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
