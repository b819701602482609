"""``Masker``: every registered secret replaced by ``***`` wherever it shows.

A secret can reach text in more shapes than the one it was given in: printed as is, inside a
larger string, JSON-encoded (quotes and backslashes escaped, non-ASCII as ``\\uXXXX``),
``repr``-ed, or URL-encoded in a connection URI. The masker knows each of those shapes of
each secret and replaces the longest match first, so a secret that contains another is
masked whole. Values shorter than ``MIN_LENGTH`` are not masked (masking ``"a"`` would
blank every log); they are reported by ``too_short`` so a caller can say so. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4


def shapes(secret: str) -> set[str]:
    """The forms ``secret`` takes in text: as is, JSON-escaped (ASCII and not), ``repr``-ed
    and URL-encoded."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }
    return {form for form in forms if len(form) >= MIN_LENGTH}


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.too_short: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these too (strings; other values are ignored)."""
        for secret in secrets:
            if not isinstance(secret, str) or not secret:
                continue
            if len(secret) < MIN_LENGTH:
                self.too_short.add(secret)
            else:
                self._secrets.add(secret)
        forms = sorted({f for s in self._secrets for f in shapes(s)}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def mask(self, text: str) -> str:
        """``text`` with every shape of every secret replaced by ``***``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def mask_value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) masked."""
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self.mask(str(k)): self.mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_value(v) for v in value]
        return value
