"""Reading a listing's page from a request whose parameters its operation checked."""

from __future__ import annotations

from pipeline_core.api.http import Request

DEFAULT_LIMIT = 100


def page(request: Request, default: int = DEFAULT_LIMIT) -> tuple[int, int]:
    """(limit, offset) of a listing: ``limit`` defaults to ``default``, ``offset`` to 0."""
    return request.args.get("limit", default), request.args.get("offset", 0)
