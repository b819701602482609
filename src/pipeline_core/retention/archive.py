"""The archive a clean-up writes: gzip-compressed JSON lines, one per deleted run.

Each batch is one gzip member, written, flushed and synced to disk before its runs are
deleted: whatever a crash interrupts, a deleted run is in the archive. A member cut short by
a crash is found when the archive is opened again and cut off (its runs were not deleted, so
they are written again). Any gzip reader reads the file whole (``gzip.open``; ``zcat``).

A line: ``{"format": "pipeline-core-archive/1", "archived_at", "dag_id", "run_id",
"tables": {table: [{column: value}, ...]}}``. A run retried while its batch was written is
kept in the store and may appear in a later archive again: the last line of a run wins.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from pipeline_core.model import iso

FORMAT = "pipeline-core-archive/1"
_CHUNK = 1 << 20
log = logging.getLogger(__name__)


class ArchiveError(Exception):
    """The archive cannot be opened or written (a message for the user, no traceback)."""


class Archive:
    """An archive file opened for appending (``open`` checks and repairs it)."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path, self._handle = path, handle
        self.runs = 0

    @classmethod
    def open(cls, path: str | Path) -> Archive:
        target = Path(path)
        if target.is_dir():
            raise ArchiveError(f"archive {target} is a directory")
        try:
            handle = target.open("ab")
        except OSError as exc:
            raise ArchiveError(f"cannot write archive {target}: {exc.strerror}") from None
        whole, damaged = complete_length(target)
        size = handle.seek(0, os.SEEK_END)
        if damaged:
            handle.close()
            what = "is not a gzip archive" if whole == 0 else f"is damaged after byte {whole}"
            raise ArchiveError(f"archive {target} {what}; name another file")
        if whole < size:
            log.warning("archive %s: cutting off %d bytes an interrupted clean left", target,
                        size - whole)  # fmt: skip
            handle.truncate(whole)
        return cls(target, handle)

    def write(self, runs: Sequence[dict[str, Any]], at: datetime) -> None:
        """Append ``runs`` (``RetentionStore.run_rows``) as one member, on disk when this
        returns. ``ArchiveError`` if it could not be (the disk is full ...)."""
        if not runs:
            return
        lines = "".join(
            json.dumps({"format": FORMAT, "archived_at": iso(at), **run}, default=str) + "\n"
            for run in runs
        )
        start = self._handle.tell()
        try:
            self._handle.write(gzip.compress(lines.encode(), compresslevel=6, mtime=0))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            self._handle.truncate(start)
            raise ArchiveError(f"cannot write archive {self.path}: {exc.strerror}") from None
        self.runs += len(runs)

    def close(self) -> None:
        self._handle.close()


def complete_length(path: Path) -> tuple[int, bool]:
    """Where the last whole gzip member of ``path`` ends, and whether what follows is not
    the start of one (a crash cuts a member short; anything else is damage)."""
    whole = offset = 0
    member = zlib.decompressobj(wbits=31)
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            while chunk:
                try:
                    member.decompress(chunk)
                except zlib.error:
                    return whole, True
                if not member.eof:
                    offset += len(chunk)
                    break
                offset += len(chunk) - len(member.unused_data)
                whole, chunk = offset, member.unused_data
                member = zlib.decompressobj(wbits=31)
    return whole, False


def read_archive(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every run of an archive, in the order written."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)
