"""The application: the router behind a chain of middleware (``api.middleware``), outermost
first — request id, access log, CORS headers, conditional answers (ETag), error translation,
the audit trail, then the guards (Host check, origin check and preflight) — composed once;
after routing, the ``Gate`` checks the bearer token's account against the route's role and
DAG scope, and the handler runs as that account (the events it causes carry its name).

The same chain runs twice over for a request that needs the store: on the event loop with
the in-memory endpoint (cheap answers: refusals, a route's ``fast`` answer) and, when that
gives ``None``, on a handler thread with the full one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline_core.api.conditional import tagged
from pipeline_core.api.http import HTTPError, Request, Response
from pipeline_core.api.middleware import Handler, Middleware, compose
from pipeline_core.api.middleware.accounts import Gate, NeedsStore
from pipeline_core.api.middleware.cors import CorsPolicy
from pipeline_core.api.middleware.errors import translate_errors
from pipeline_core.api.middleware.guards import HostCheck
from pipeline_core.api.middleware.identity import access_log, request_id
from pipeline_core.api.router import Match, Route, Router
from pipeline_core.events import acting


@dataclass
class AppSettings:
    cors_origins: Sequence[str] = ()  # empty: localhost origins on any port
    auth_token: str | None = None
    log_json: bool = False
    #: Only loopback names (and ``allowed_hosts``) are accepted as ``Host``: set when the
    #: server listens on a loopback address, so a page rebound to 127.0.0.1 cannot reach it.
    loopback_hosts_only: bool = False
    allowed_hosts: Sequence[str] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: Who may ask what (``None``: a gate that asks for the ``auth_token`` only).
    gate: Gate | None = None


class App:
    def __init__(self, routes: Sequence[Route], settings: AppSettings) -> None:
        self.router = Router(routes)
        self.settings = settings
        cors = CorsPolicy(settings.cors_origins)
        self.gate = settings.gate or Gate(settings.auth_token, None, None, _no_clock)
        chain: list[Middleware] = [
            request_id,
            access_log(settings.log_json),
            cors.headers,
            conditional,
            self.gate.audit,
            translate_errors,
        ]
        if settings.loopback_hosts_only:
            chain.append(HostCheck(settings.allowed_hosts))
        chain.append(cors.guard)
        self._full: Handler = compose(chain, self._route)
        self._fast: Handler = compose(chain, self._route_from_memory)

    def __call__(self, request: Request) -> Response:
        response = self._full(request)
        assert response is not None
        return response

    def from_memory(self, request: Request) -> Response | None:
        """The answer if it needs neither the store nor a wait — refusals (404, 405, 401,
        421, 403), a route's ``fast`` answer (cached views, constant documents) — else
        ``None``: the server then calls the app on a handler thread. Run on the event loop,
        this spares cheap answers the trip to a thread and back."""
        return self._fast(request)

    def _resolve(self, request: Request) -> Route:
        match, route, params, allowed = self.router.resolve(request.method, request.path)
        if match is Match.NONE:
            raise HTTPError(404, "not_found", f"no route for {request.path}")
        if match is Match.PARTIAL:
            raise HTTPError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here; use {', '.join(allowed)}",
                headers={"Allow": ", ".join(allowed)},
            )
        assert route is not None
        request.params = params
        request.operation = route.operation.operation_id if route.operation else None
        return route

    def _route(self, request: Request) -> Response | None:
        route = self._resolve(request)
        self.gate.admit(request, route.operation, from_memory=False)
        if route.check is not None:
            route.check(request)
        with acting(request.account.name if request.account is not None else None):
            return route.handler(request)

    def _route_from_memory(self, request: Request) -> Response | None:
        """A ``fast`` answer is given to checked requests only; a route without one is
        checked once, on the handler thread (a body is not validated on the event loop)."""
        route = self._resolve(request)
        if route.fast is None:
            return None
        try:
            self.gate.admit(request, route.operation, from_memory=True)
        except NeedsStore:
            return None
        if route.check is not None:
            route.check(request)
        return route.fast(request)


def conditional(request: Request, call_next: Handler) -> Response | None:
    """ETag and ``If-None-Match`` on what a route answers."""
    response = call_next(request)
    return None if response is None else tagged(request, response)


def _no_clock() -> datetime:
    raise AssertionError("a gate without a store of tokens reads no expiry")
