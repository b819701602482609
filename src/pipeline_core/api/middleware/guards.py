"""The ``Host`` check against DNS rebinding: a server on loopback answers only to loopback
names and the allowed ones. (Tokens and roles: ``accounts.Gate``.)"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from pipeline_core.api.http import HTTPError, Request, Response
from pipeline_core.api.middleware import Handler

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


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
