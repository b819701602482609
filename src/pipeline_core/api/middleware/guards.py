"""Who may ask: the ``Host`` check against DNS rebinding (a server on loopback answers only
to loopback names and the allowed ones) and the optional bearer token, compared in constant
time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from urllib.parse import urlsplit

from pipeline_core.api.http import HTTPError, Request, Response
from pipeline_core.api.middleware import Handler

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
PUBLIC_PATHS = ("/api/v1/health", "/api/v1/version")
QUERY_TOKEN_PATHS = ("/api/v1/events",)
#: Inbound webhooks prove who sent them by their signature, not the API token.
SIGNED_PREFIX = "/api/v1/webhooks/"


class HostCheck:
    def __init__(self, allowed_hosts: Sequence[str]) -> None:
        self.allowed = tuple(allowed_hosts)
        self._good: set[str] = set()

    def __call__(self, request: Request, call_next: Handler) -> Response | None:
        host = request.header("host")
        if host is not None and host not in self._good:
            self._check(host)
        return call_next(request)

    def _check(self, host: str) -> None:
        try:
            name = urlsplit(f"//{host}").hostname or ""  # lower case, port and brackets gone
        except ValueError:  # such as an unclosed "[::1"
            name = ""
        if name in LOOPBACK_NAMES or host in self.allowed or name in self.allowed:
            if len(self._good) < 64:  # the few names clients use, not every one sent
                self._good.add(host)
            return
        raise HTTPError(
            421,
            "misdirected_request",
            f"Host {host[:100]!r} is not a name of this server, which listens on loopback; "
            "start it with --allowed-host NAME to accept that name",
        )


class BearerAuth:
    def __init__(self, token: str) -> None:
        self.token = token.encode()

    def __call__(self, request: Request, call_next: Handler) -> Response | None:
        path = request.path.rstrip("/")
        if path in PUBLIC_PATHS or path in ("", "/ui") or path.startswith(("/ui/", SIGNED_PREFIX)):
            return call_next(request)  # the dashboard's files: the page asks for the token
        supplied = request.header("authorization") or ""
        scheme, _, value = supplied.partition(" ")
        if not supplied and path in QUERY_TOKEN_PATHS:
            # A browser EventSource cannot set headers: the stream also takes ?access_token=.
            scheme, value = "bearer", (request.query.get("access_token") or [""])[-1]
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), self.token
        ):
            raise HTTPError(
                401,
                "unauthorized",
                "a valid 'Authorization: Bearer <token>' header is required",
                headers={"WWW-Authenticate": 'Bearer realm="pipeline-core"'},
            )
        return call_next(request)
