"""The store's part for history retention (``store.retention``): finding finished runs old
enough to go, reading every row of theirs (for an archive), deleting them with all their
rows while keeping their figures in daily roll-ups, trimming the event log, and giving the
space back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class OldRun:
    """A finished run that ended before the cut-off, as the clean-up finds it (``pk`` orders
    runs by when they were made)."""

    pk: int
    dag_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class Cleaned:
    """What one deleting transaction removed: the runs, and every row with them."""

    runs: tuple[OldRun, ...]
    rows: int


@dataclass(frozen=True, slots=True)
class OldHistory:
    """What a clean-up would delete (a dry run)."""

    runs: int
    task_instances: int


class RetentionStore(Protocol):
    """Finished runs past an age, deleted in bounded transactions with all their rows.

    Only finished runs (``success``, ``failed``, ``cancelled``) whose ``end_date`` is before
    the cut-off ever go; a run is deleted with every row of its own or not at all.
    """

    def old_runs(
        self, before: datetime, *, dag_ids: Sequence[str] = (), after: int = 0, limit: int = 100
    ) -> list[OldRun]:
        """Up to ``limit`` finished runs that ended before ``before`` (of ``dag_ids``, or of
        every DAG when empty), in the order they were made, after the one whose ``pk`` is
        ``after``."""
        ...

    def count_old(self, before: datetime, *, dag_ids: Sequence[str] = ()) -> OldHistory:
        """How many runs and task instances ``old_runs`` would find, all pages together."""
        ...

    def run_rows(self, runs: Sequence[OldRun]) -> list[dict[str, Any]]:
        """Every stored row of each run, as ``{"dag_id", "run_id", "tables": {table: [row,
        ...]}}`` with each row ``{column: value}`` — what an archive keeps."""
        ...

    def delete_runs(self, runs: Sequence[OldRun], before: datetime) -> Cleaned:
        """In one transaction: those of ``runs`` that are still finished and ended before
        ``before`` (one retried or cleared meanwhile is kept), added to the daily roll-ups
        that keep statistics whole, then deleted with their task instances, XCom, logs,
        claims, idempotency keys, missed deadlines, notifications and their attempts, and
        events; appends a ``run.deleted`` event for each (caches and live views drop it)."""
        ...

    def trim(self, before: datetime, *, limit: int = 1000) -> int:
        """Delete up to ``limit`` of the oldest events, as long as each is older than
        ``before`` (the log stays whole after the oldest event kept, so a reader resuming from
        an id it no longer holds starts from that one), and up to ``limit`` delivered or failed
        notifications of no run created before ``before``. Returns the rows deleted."""
        ...

    def compact(self) -> int:
        """Rewrite the database file whole, giving back all free space (SQLite ``VACUUM``,
        which also switches a file made before incremental vacuum over to it; writers wait
        while it runs). Returns the bytes given back; 0 on PostgreSQL."""
        ...

    def reclaim(self, pages: int) -> int:
        """Give up to ``pages`` free pages of the database file back to the file system
        (SQLite with incremental vacuum); returns how many bytes. PostgreSQL's autovacuum makes
        deleted rows' space reusable by itself: there this returns 0."""
        ...
