"""``Cleaner``: one clean-up of finished runs past a cut-off, in short transactions.

Each step finds a page of old runs, writes them to the archive (when there is one) and
deletes them in one transaction sized to take about ``slice_seconds``, then waits as long
as it took (at least ``slice_seconds``) so the engine's and the API's writes go between two
steps: a clean-up of millions of rows never holds the database for more than a few
milliseconds at a time. A clean-up stopped anywhere — ``stop``, an error, kill -9 — is
started again and carries on; every run is deleted with all its rows or not at all.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipeline_core.retention.archive import Archive
from pipeline_core.store import Store
from pipeline_core.store.retention import OldRun

#: Pages (4 KiB on SQLite) given back to the file system per step (about 4 ms of work).
RECLAIM_PAGES = 128
FIRST_BATCH = 50
MAX_BATCH = 5_000


@dataclass
class CleanReport:
    """What a clean-up did."""

    runs: int = 0
    rows: int = 0
    events: int = 0
    reclaimed: int = 0  # bytes given back to the file system
    kept: int = 0  # found old, but retried before they could be deleted
    seconds: float = 0.0
    longest_step: float = 0.0
    stopped: bool = False


@dataclass
class Cleaner:
    """Deletes the finished runs that ended before ``before`` (of ``dag_ids``, or all), then
    trims the event log to the same age (all DAGs only) and gives space back."""

    store: Store
    before: datetime
    dag_ids: Sequence[str] = ()
    archive: Archive | None = None
    slice_seconds: float = 0.005
    stop: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = time.monotonic
    #: Told the report after each step (progress).
    on_step: Callable[[CleanReport], None] = lambda report: None

    def run(self, now: datetime) -> CleanReport:
        """Clean up; ``now`` stamps the archive's lines."""
        report, started = CleanReport(), self.clock()
        retention, batch, after = self.store.retention, FIRST_BATCH, 0
        while not self.stop.is_set():
            found = retention.old_runs(self.before, dag_ids=self.dag_ids, after=after, limit=batch)
            if not found:
                break
            after = found[-1].pk
            if self.archive is not None:
                self.archive.write(retention.run_rows(found), now)
            _, took = self._step(report, functools.partial(self._delete, found, report))
            # Size the next transaction to take about a slice, growing at most twofold (one
            # quick step on a quiet machine must not make the next one long).
            fit = int(batch * self.slice_seconds / max(took, 1e-4))
            batch = max(1, min(MAX_BATCH, 2 * batch, fit))
        while not self.stop.is_set() and not self.dag_ids:
            if not self._step(report, lambda: self._trim(report))[0]:
                break
        while not self.stop.is_set():
            if not self._step(report, lambda: self._reclaim(report))[0]:
                break
        report.stopped = self.stop.is_set()
        report.seconds = self.clock() - started
        return report

    def _step(self, report: CleanReport, work: Callable[[], int]) -> tuple[int, float]:
        """Run one transaction, tell of it, then leave the database to others a while.
        Returns what ``work`` returned (how much it did) and how long it took."""
        start = self.clock()
        done = work()
        took = self.clock() - start
        report.longest_step = max(report.longest_step, took)
        self.on_step(report)
        self.stop.wait(max(took, self.slice_seconds))
        return done, took

    def _delete(self, found: Sequence[OldRun], report: CleanReport) -> int:
        cleaned = self.store.retention.delete_runs(found, self.before)
        report.runs += len(cleaned.runs)
        report.rows += cleaned.rows
        report.kept += len(found) - len(cleaned.runs)
        return len(cleaned.runs)

    def _trim(self, report: CleanReport) -> int:
        trimmed = self.store.retention.trim(self.before, limit=2_000)
        report.events += trimmed
        return trimmed

    def _reclaim(self, report: CleanReport) -> int:
        reclaimed = self.store.retention.reclaim(RECLAIM_PAGES)
        report.reclaimed += reclaimed
        return reclaimed
