"""Real receivers for notification tests: an HTTP server that records what it is sent (and
can answer any status, hang, redirect, or be stopped and started again on the same port), and
an SMTP server (aiosmtpd) that keeps the messages it accepts."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        return self.headers["X-Pipeline-Core-Delivery"]


@dataclass
class Receiver:
    """``status(path)`` decides each answer (default 200); ``hang`` holds every request."""

    status: Callable[[str], int] = lambda path: 200
    hang: threading.Event | None = None
    location: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._arrived = threading.Condition()
        self._server: http.server.ThreadingHTTPServer | None = None
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.hang is not None:
                    receiver.hang.wait(30)
                status = receiver.status(self.path)
                with receiver._arrived:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                    receiver._arrived.notify_all()
                self.send_response(status)
                if 300 <= status < 400 and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.received) >= count, timeout), (
                f"{len(self.received)} of {count} requests arrived"
            )
            return list(self.received)


class MailServer:
    """A real SMTP server on loopback; ``refuse`` makes it answer 550 to every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Message] = []
        self.refuse = False
        self._arrived = threading.Condition()
        server = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                if server.refuse:
                    return "550 mailbox unavailable"
                with server._arrived:
                    server.messages.append(message_from_bytes(envelope.content))
                    server._arrived.notify_all()
                return "250 OK"

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> MailServer:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

    def wait_for(self, count: int, timeout: float = 15) -> list[Message]:
        with self._arrived:
            assert self._arrived.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)
