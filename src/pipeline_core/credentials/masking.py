"""``Masker``: every registered secret replaced by ``***`` wherever it shows.

A secret can reach text in more shapes than the one it was given in: printed as is, inside a
larger string, JSON-encoded (quotes and backslashes escaped, non-ASCII as ``\\uXXXX``),
``repr``-ed, or URL-encoded in a connection URI. The masker knows each of those shapes of
each secret and replaces the longest match first, so a secret that contains another is
masked whole. Values shorter than ``MIN_LENGTH`` are not masked (masking ``"a"`` would
blank every log); they are reported by ``too_short`` so a caller can say so. Pure.

The search is one Aho-Corasick automaton over the UTF-8 bytes of the text (``ahocorasick_rs``):
its cost does not grow with the number of secrets, and text without a secret (nearly all of
a log) comes back as the very same string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

import ahocorasick_rs

MASK = "***"
_MASK_BYTES = MASK.encode()
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
    """Masks a set of secrets that only grows; ``add`` swaps in a new automaton at once, so
    threads that mask meanwhile see the old set or the new one, never half of it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._automaton: ahocorasick_rs.BytesAhoCorasick | None = None
        self.too_short: set[str] = set()
        self.add(secrets)

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these too (strings; other values are ignored)."""
        new = set()
        for secret in secrets:
            if not isinstance(secret, str) or not secret:
                continue
            if len(secret) < MIN_LENGTH:
                self.too_short.add(secret)
            elif secret not in self._secrets:
                new.add(secret)
        if not new:
            return
        known = self._secrets | new
        forms = sorted({f.encode("utf-8", "surrogatepass") for s in known for f in shapes(s)})
        self._automaton = ahocorasick_rs.BytesAhoCorasick(
            forms, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest
        )
        self._secrets = known

    def __bool__(self) -> bool:
        return self._automaton is not None

    def mask(self, text: str) -> str:
        """``text`` with every shape of every secret replaced by ``***`` (``text`` itself
        when it holds none)."""
        automaton = self._automaton
        if automaton is None or not text:
            return text
        data = text.encode("utf-8", "surrogatepass")
        found = automaton.find_matches_as_indexes(data)
        if not found:
            return text
        pieces: list[bytes] = []
        end = 0
        for _, start, stop in found:
            pieces += (data[end:start], _MASK_BYTES)
            end = stop
        pieces.append(data[end:])
        # Matches are whole UTF-8 sequences, so every cut falls between characters.
        return b"".join(pieces).decode("utf-8", "surrogatepass")

    def mask_value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) masked (``value`` itself
        when no secret is known: a large XCom value is not copied for nothing)."""
        if self._automaton is None:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, dict):
            return {self.mask(str(k)): self.mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_value(v) for v in value]
        return value
