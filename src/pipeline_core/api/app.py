"""The application: request id, logging, CORS, auth and error translation around the router.

Errors are translated in one place: ``HTTPError`` as given, ``PipelineError`` subclasses by
an MRO table (``NotFound`` → 404, ``Conflict`` → 409, ...), anything else → 500 with the
request id (the traceback goes to the server log only).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline_core.api.conditional import tagged
from pipeline_core.api.http import HTTPError, Request, Response, error_body
from pipeline_core.api.router import Match, Route, Router
from pipeline_core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PipelineError,
    StoreUnavailable,
)

logger = logging.getLogger("pipeline_core.api")
STATUS_BY_ERROR: dict[type[PipelineError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidRequest: 400,
    StoreUnavailable: 503,
}
PUBLIC_PATHS = ("/api/v1/health", "/api/v1/version")
QUERY_TOKEN_PATHS = ("/api/v1/events",)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
_LOCALHOST = re.compile(r"http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")
CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID, X-Request-Id"


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


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


class App:
    def __init__(self, routes: Sequence[Route], settings: AppSettings) -> None:
        self.router = Router(routes)
        self.settings = settings
        self._good_hosts: set[str] = set()

    def __call__(self, request: Request) -> Response:
        response = self._answer(request, from_memory=False)
        assert response is not None
        return response

    def from_memory(self, request: Request) -> Response | None:
        """The answer if it needs neither the store nor a wait — refusals (404, 405, 401,
        421, 403), a route's ``fast`` answer (cached views, constant documents) — else
        ``None``: the server then calls the app on a handler thread. Run on the event loop,
        this spares cheap answers the trip to a thread and back."""
        return self._answer(request, from_memory=True)

    def _answer(self, request: Request, *, from_memory: bool) -> Response | None:
        started = time.perf_counter()
        if not request.request_id:
            supplied = request.header("x-request-id")
            request.request_id = (
                supplied if supplied and _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
            )
        answer = self._handle(request, from_memory)
        if answer is None:
            return None
        response = tagged(request, answer)
        response.headers["X-Request-Id"] = request.request_id
        response.headers.update(self._cors(request))
        self._log(request, response, (time.perf_counter() - started) * 1000)
        return response

    def _handle(self, request: Request, from_memory: bool) -> Response | None:
        try:
            self._check_host(request)
            if request.method == "OPTIONS" and request.header("origin"):
                return self._preflight(request)
            self._check_origin(request)
            self._authorize(request)
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
            if from_memory:
                return route.fast(request) if route.fast is not None else None
            return route.handler(request)
        except HTTPError as exc:
            return Response(
                exc.status, error_body(exc.code, exc.message, exc.details), dict(exc.headers)
            )
        except PipelineError as exc:
            status = next(
                (STATUS_BY_ERROR[k] for k in type(exc).__mro__ if k in STATUS_BY_ERROR), 500
            )
            code = exc.code if status != 500 else "internal"
            return Response(status, error_body(code, exc.message, exc.details))
        except Exception:
            logger.exception("unhandled error in request %s", request.request_id)
            message = f"internal error; quote request id {request.request_id} when reporting it"
            return Response(500, error_body("internal", message))

    def _check_host(self, request: Request) -> None:
        host = request.header("host")
        if not self.settings.loopback_hosts_only or host is None or host in self._good_hosts:
            return
        try:
            name = urlsplit(f"//{host}").hostname or ""  # lower case, port and brackets gone
        except ValueError:  # such as an unclosed "[::1"
            name = ""
        allowed = self.settings.allowed_hosts
        if name in LOOPBACK_NAMES or host in allowed or name in allowed:
            if len(self._good_hosts) < 64:  # the few names clients use, not every one sent
                self._good_hosts.add(host)
            return
        raise HTTPError(
            421,
            "misdirected_request",
            f"Host {host[:100]!r} is not a name of this server, which listens on loopback; "
            "start it with --allowed-host NAME to accept that name",
        )

    def _check_origin(self, request: Request) -> None:
        """A browser page of an origin CORS does not allow may not change anything (reading
        is already refused to it by the browser)."""
        origin = request.header("origin")
        if origin is None or request.method in SAFE_METHODS or self._origin_allowed(origin):
            return
        raise HTTPError(
            403,
            "forbidden_origin",
            f"requests from origin {origin[:100]!r} may not change state; allow it with "
            "--cors-origin",
        )

    def _authorize(self, request: Request) -> None:
        token = self.settings.auth_token
        if not token or request.path.rstrip("/") in PUBLIC_PATHS:
            return
        supplied = request.header("authorization") or ""
        scheme, _, value = supplied.partition(" ")
        if not supplied and request.path.rstrip("/") in QUERY_TOKEN_PATHS:
            # A browser EventSource cannot set headers: the stream also takes ?access_token=.
            scheme, value = "bearer", (request.query.get("access_token") or [""])[-1]
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise HTTPError(
                401,
                "unauthorized",
                "a valid 'Authorization: Bearer <token>' header is required",
                headers={"WWW-Authenticate": 'Bearer realm="pipeline-core"'},
            )

    def _origin_allowed(self, origin: str) -> bool:
        origins = self.settings.cors_origins
        if not origins:
            return bool(_LOCALHOST.fullmatch(origin))
        return "*" in origins or origin in origins

    def _cors(self, request: Request) -> dict[str, str]:
        origin = request.header("origin")
        if not origin or not self._origin_allowed(origin):
            return {"Vary": "Origin"} if origin else {}
        allow = "*" if "*" in self.settings.cors_origins else origin
        return {
            "Access-Control-Allow-Origin": allow,
            "Vary": "Origin",
            "Access-Control-Expose-Headers": "X-Request-Id, Location",
        }

    def _preflight(self, request: Request) -> Response:
        if not self._origin_allowed(request.header("origin") or ""):
            return Response(204)
        return Response(
            204,
            headers={
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )

    def _log(self, request: Request, response: Response, duration_ms: float) -> None:
        if self.settings.log_json:
            import json

            logger.info(
                json.dumps(
                    {
                        "method": request.method,
                        "path": request.path,
                        "status": response.status,
                        "duration_ms": round(duration_ms, 2),
                        "request_id": request.request_id,
                    }
                )
            )
        else:
            logger.info(
                "%s %s %d %.1fms %s",
                request.method,
                request.path,
                response.status,
                duration_ms,
                request.request_id,
            )
