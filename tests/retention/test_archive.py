"""The archive: written member by member and read back whole, a member cut short by a crash
cut off when it is opened again, and a file that is not one (or cannot be written) refused
with a message before anything is deleted."""

from __future__ import annotations

import errno
import gzip
import logging
import os
from pathlib import Path

import pytest

from pipeline_core.retention.archive import Archive, ArchiveError, complete_length, read_archive
from tests.retention.history import BASE


def run(n: int) -> dict[str, object]:
    return {"dag_id": "etl", "run_id": f"r{n}", "tables": {"dag_runs": [{"id": n}]}}


def test_batches_are_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    archive = Archive.open(path)
    archive.write([run(1), run(2)], BASE)
    archive.write([], BASE)
    archive.write([run(3)], BASE)
    archive.close()
    assert [x["run_id"] for x in read_archive(path)] == ["r1", "r2", "r3"]
    with gzip.open(path, "rt") as lines:  # any gzip reader reads it whole
        assert len(lines.read().splitlines()) == 3
    again = Archive.open(path)  # appending later keeps what is there
    again.write([run(4)], BASE)
    again.close()
    assert [x["run_id"] for x in read_archive(path)] == ["r1", "r2", "r3", "r4"]


def test_a_member_cut_short_by_a_crash_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.jsonl.gz"
    archive = Archive.open(path)
    archive.write([run(1)], BASE)
    archive.close()
    whole = path.stat().st_size
    member = gzip.compress(b'{"dag_id": "etl", "run_id": "r2"}\n' * 50)
    with path.open("ab") as handle:
        handle.write(member[: len(member) // 2])  # kill -9 mid-write
    assert complete_length(path) == (whole, False)
    with caplog.at_level(logging.WARNING, logger="pipeline_core.retention.archive"):
        archive = Archive.open(path)
    assert "cutting off" in caplog.text and path.stat().st_size == whole
    archive.write([run(2)], BASE)
    archive.close()
    assert [x["run_id"] for x in read_archive(path)] == ["r1", "r2"]


def test_what_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n")
    with pytest.raises(ArchiveError, match="is not a gzip archive"):
        Archive.open(text)
    assert text.read_text() == "my notes\n"  # untouched
    damaged = tmp_path / "d.jsonl.gz"
    damaged.write_bytes(gzip.compress(b"{}\n") + b"\x1f\x8b\x08garbage-that-is-not-deflate")
    with pytest.raises(ArchiveError, match="is damaged after byte"):
        Archive.open(damaged)
    with pytest.raises(ArchiveError, match="is a directory"):
        Archive.open(tmp_path)
    with pytest.raises(ArchiveError, match=r"cannot write archive .*No such file or directory"):
        Archive.open(tmp_path / "missing" / "a.jsonl.gz")


def test_a_failed_write_is_said_and_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jsonl.gz"
    archive = Archive.open(path)
    archive.write([run(1)], BASE)
    size = path.stat().st_size

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ArchiveError, match="No space left on device"):
        archive.write([run(2)], BASE)
    archive.close()
    assert path.stat().st_size == size
    assert [x["run_id"] for x in read_archive(path)] == ["r1"]
