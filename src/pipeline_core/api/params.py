"""Query-string parsing with specific 400s (unknown parameters are named, never ignored)."""

from __future__ import annotations

from datetime import datetime

from pipeline_core.api.http import Request, bad_request
from pipeline_core.dag.model import parse_datetime

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000


def page(request: Request, allowed: set[str]) -> tuple[int, int]:
    """Check for unknown parameters; return (limit, offset)."""
    unknown = sorted(set(request.query) - allowed - {"limit", "offset"})
    if unknown:
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}", parameters=unknown)
    limit = integer(request, "limit", DEFAULT_LIMIT)
    offset = integer(request, "offset", 0)
    if not 0 < limit <= MAX_LIMIT:
        raise bad_request(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise bad_request(f"offset must be ≥ 0, got {offset}")
    return limit, offset


def integer(request: Request, name: str, default: int) -> int:
    values = request.query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise bad_request(f"'{name}' must be an integer, got {values[-1]!r}") from None


def boolean(request: Request, name: str) -> bool | None:
    values = request.query.get(name)
    if not values:
        return None
    value = values[-1].lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise bad_request(f"'{name}' must be true or false, got {values[-1]!r}")


def strings(request: Request, name: str) -> list[str]:
    """A repeatable or comma-separated parameter."""
    return [part for value in request.query.get(name, []) for part in value.split(",") if part]


def date(request: Request, name: str) -> datetime | None:
    values = request.query.get(name)
    if not values:
        return None
    try:
        return parse_datetime(values[-1])
    except ValueError as exc:
        raise bad_request(f"'{name}': {exc}") from None
