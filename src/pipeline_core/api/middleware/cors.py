"""Browser origins: which may read answers (CORS headers), which may change state, and the
preflight answer. By default only localhost origins, on any port."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline_core.api.http import HTTPError, Request, Response
from pipeline_core.api.middleware import Handler

_LOCALHOST = re.compile(r"http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?")
CORS_METHODS = "GET, POST, PATCH, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type, Last-Event-ID, X-Request-Id"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class CorsPolicy:
    def __init__(self, origins: Sequence[str]) -> None:
        """``origins`` empty: localhost origins; ``*``: any."""
        self.origins = tuple(origins)

    def allowed(self, origin: str) -> bool:
        if not self.origins:
            return bool(_LOCALHOST.fullmatch(origin))
        return "*" in self.origins or origin in self.origins

    def headers(self, request: Request, call_next: Handler) -> Response | None:
        """Middleware: CORS headers on every answer to a page of an allowed origin."""
        response = call_next(request)
        origin = request.header("origin")
        if response is None or not origin:
            return response
        if self.allowed(origin):
            response.headers.update(
                {
                    "Access-Control-Allow-Origin": "*" if "*" in self.origins else origin,
                    "Vary": "Origin",
                    "Access-Control-Expose-Headers": "X-Request-Id, Location",
                }
            )
        else:
            response.headers["Vary"] = "Origin"
        return response

    def guard(self, request: Request, call_next: Handler) -> Response | None:
        """Middleware: answer preflights; a page of an origin CORS does not allow may not
        change anything (reading is already refused to it by the browser)."""
        origin = request.header("origin")
        if origin is None:
            return call_next(request)
        if request.method == "OPTIONS":
            return self._preflight(origin)
        if request.method not in SAFE_METHODS and not self.allowed(origin):
            raise HTTPError(
                403,
                "forbidden_origin",
                f"requests from origin {origin[:100]!r} may not change state; allow it with "
                "--cors-origin",
            )
        return call_next(request)

    def _preflight(self, origin: str) -> Response:
        if not self.allowed(origin):
            return Response(204)
        return Response(
            204,
            headers={
                "Access-Control-Allow-Methods": CORS_METHODS,
                "Access-Control-Allow-Headers": CORS_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )
