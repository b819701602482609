"""An in-process client: requests go to the application the server runs — the same
``Request`` values, the same middleware chain, held answers resumed as the server resumes
them — without a socket. Route tests use it; what needs the wire (framing, streams,
limits, pipelining) keeps a real connection (``tests.api.conftest.Client``)."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from pipeline_core.api.http import Request, Response
from tests.api.conftest import checked, outgoing

HELD_FOR = 60.0


class AppClient:
    """``request`` answers ``(status, headers, parsed body)`` as ``Client.request`` does, and
    every JSON answer is checked against the OpenAPI document the same way."""

    def __init__(self, server: Any, token: str | None = None) -> None:
        self.server = server
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        given, data = outgoing(self.token, body, headers, raw)
        sent = {"host": "127.0.0.1", **{name.lower(): value for name, value in given.items()}}
        parts = urlsplit(path)
        request = Request(method, parts.path, parts.query, sent, data or b"")
        response = self._answer(request)
        assert response.handover is None, f"{method} {path} streams: test it over a socket"
        answered = {**response.headers, "Content-Type": response.content_type}
        payload = b"" if method == "HEAD" else response.body
        return (
            response.status,
            answered,
            checked(method, path, response.status, response.content_type, payload),
        )

    def _answer(self, request: Request) -> Response:
        """As the server does: the answer from memory if there is one, else the full app;
        a held answer is asked again once whoever holds it wakes it."""
        app = self.server.app
        assert app is not None, "the server is not started"
        response = app.from_memory(request) or app(request)
        while response.later is not None:
            woken = threading.Event()

            def resume(reason: str, woken: threading.Event = woken) -> None:
                request.woken = reason
                woken.set()

            response.later(resume)
            assert woken.wait(HELD_FOR), "a held request was never woken"
            response = app(request)
        return response
