"""Routes as data: ``Route("/dags/:dag_id", handler, ["GET"], operation)``, matched by
splitting the path. A route's ``Operation`` declares what it takes and answers; the checks
made from it run before the handler, and the OpenAPI document is written from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import unquote

from pipeline_core.api.http import Request, Response, bad_request
from pipeline_core.api.openapi.checks import RequestChecks
from pipeline_core.api.openapi.operation import Operation

Handler = Callable[[Request], Response]
#: Answers a request from memory (no store, no waiting), or ``None`` to leave it to the handler.
FastHandler = Callable[[Request], Response | None]


class Match(Enum):
    NONE = 0
    PARTIAL = 1  # the path matches, the method does not
    FULL = 2


@dataclass(frozen=True)
class Route:
    path: str
    handler: Handler
    methods: Sequence[str] = ("GET",)
    #: What the route takes and answers (``None``: outside the API, the dashboard's files).
    operation: Operation | None = None
    #: Tried first on the server's event loop; the handler runs on a handler thread only if
    #: this is missing or returns ``None`` (see ``App.from_memory``).
    fast: FastHandler | None = None
    parts: tuple[str, ...] = field(init=False)
    check: RequestChecks | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(p for p in self.path.split("/") if p))
        checks = RequestChecks(self.operation) if self.operation is not None else None
        object.__setattr__(self, "check", checks)

    @property
    def template(self) -> str:
        return template(self.path)

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        if len(segments) != len(self.parts):
            return None
        params = {}
        for pattern, segment in zip(self.parts, segments, strict=True):
            if pattern.startswith(":"):
                params[pattern[1:]] = segment
            elif pattern != segment:
                return None
        return params


def template(path: str) -> str:
    """A route's path as OpenAPI writes it: ``/dags/:dag_id`` is ``/dags/{dag_id}``."""
    parts = (p for p in path.split("/") if p)
    return "/" + "/".join(f"{{{p[1:]}}}" if p.startswith(":") else p for p in parts)


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)

    def resolve(
        self, method: str, path: str
    ) -> tuple[Match, Route | None, dict[str, str], list[str]]:
        """(match kind, route, path params, allowed methods for a PARTIAL match)."""
        segments = split_path(path)
        allowed: list[str] = []
        wanted = "GET" if method == "HEAD" else method  # HEAD: a GET without its body
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            if wanted in route.methods:
                return Match.FULL, route, params, []
            methods = [*route.methods, "HEAD"] if "GET" in route.methods else route.methods
            allowed.extend(m for m in methods if m not in allowed)
        if allowed:
            return Match.PARTIAL, None, {}, allowed
        return Match.NONE, None, {}, []


def split_path(path: str) -> list[str]:
    """Percent-decoded segments; a trailing slash is tolerated, encoded slashes and ``..`` are
    refused (400) rather than guessed at."""
    segments = []
    for raw in path.split("/"):
        if not raw:
            continue
        if "%2f" in raw.lower() or "%5c" in raw.lower():
            raise bad_request("encoded slashes are not allowed in the path")
        try:
            segment = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise bad_request("the path is not valid UTF-8") from None
        if segment in (".", ".."):
            raise bad_request("'.' and '..' segments are not allowed in the path")
        segments.append(segment)
    return segments
