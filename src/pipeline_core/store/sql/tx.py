"""``Tx``, the transaction handle the SQL backends share, and the timestamp parser."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, overload


@overload
def parse_ts(value: str) -> datetime: ...
@overload
def parse_ts(value: None) -> None: ...
def parse_ts(value: str | None) -> datetime | None:
    """The inverse of ``iso``."""
    if value is None:
        return None
    return datetime.fromisoformat(value)


class Tx:
    """A cursor inside one transaction, with small helpers."""

    def __init__(self, cursor: Any, rewrite: Callable[[str], str]) -> None:
        self.cursor, self.rewrite = cursor, rewrite

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cursor.execute(self.rewrite(sql), params)
        return list(self.cursor.fetchall()) if self.cursor.description else []

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.cursor.execute(self.rewrite(sql), params)
        row = self.cursor.fetchone()
        return tuple(row) if row is not None else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return row[0] if row else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(self.rewrite(sql), params)
        return int(self.cursor.rowcount)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """One statement for each of ``rows``; how many rows they changed in all."""
        if not rows:
            return 0
        self.cursor.executemany(self.rewrite(sql), rows)
        return max(0, int(self.cursor.rowcount))

    def records(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows as ``{column: value}``."""
        self.cursor.execute(self.rewrite(sql), params)
        names = [column[0] for column in self.cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in self.cursor.fetchall()]
