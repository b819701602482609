"""Query-string parsing with specific 400s (unknown parameters are named, never ignored)."""

from __future__ import annotations

import re
from datetime import datetime

from pipeline_core.api.http import Request, bad_request
from pipeline_core.dag.model import parse_datetime

DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
#: The largest integer any parameter takes: exact in JSON (a double) and in SQLite.
MAX_INTEGER = 2**53
_INTEGER = re.compile(r"-?[0-9]{1,16}")


def whole_number(text: str, name: str, minimum: int = 0, maximum: int = MAX_INTEGER) -> int:
    """``text`` as an integer of ASCII digits within [minimum, maximum]; 400 naming ``name``."""
    value = int(text) if _INTEGER.fullmatch(text) else None
    if value is None or not minimum <= value <= maximum:
        raise bad_request(
            f"'{name}' must be a whole number from {minimum} to {maximum}, got {text[:40]!r}"
        )
    return value


def body_integer(value: object, name: str, minimum: int, maximum: int) -> int:
    """A body field's whole number within [minimum, maximum]: JSON has one number type, so
    ``5.0`` is the integer 5, as JSON Schema's ``integer`` says; 400 naming ``name``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
        raise bad_request(f"'{name}' must be an integer from {minimum} to {maximum}, got {shown}")
    return value


def page(
    request: Request, allowed: set[str], max_limit: int = MAX_LIMIT, default: int = DEFAULT_LIMIT
) -> tuple[int, int]:
    """Check for unknown parameters; return (limit, offset)."""
    only(request, allowed | {"limit", "offset"})
    return integer(request, "limit", default, 1, max_limit), integer(request, "offset", 0)


def only(request: Request, allowed: set[str]) -> None:
    """400 naming every query parameter not in ``allowed``."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}", parameters=unknown)


def integer(
    request: Request, name: str, default: int, minimum: int = 0, maximum: int = MAX_INTEGER
) -> int:
    values = request.query.get(name)
    if not values:
        return default
    return whole_number(values[-1], name, minimum, maximum)


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
