"""``pipeline-core db clean`` as a user runs it: bad ages refused with a message, a dry run,
an archive that cannot be written refused before anything is deleted, and a clean-up killed
with SIGKILL in the middle leaving whole runs, then finishing when run again."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline_core.model import utcnow
from pipeline_core.retention.archive import read_archive
from pipeline_core.store import open_store
from tests.conftest import poll_until
from tests.retention.history import BASE, fill, runs_left, statistics, whole

ROOT = Path(__file__).parents[2]
CUT = BASE + timedelta(hours=60)


def age_of(cut: object) -> str:
    """``--older-than`` putting the cut-off half an hour before ``cut`` (the runs end on
    the hour)."""
    return f"{int((utcnow() - cut).total_seconds()) + 1800}s"  # type: ignore[operator]


def command(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", "db", "clean", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip


def clean(*args: str) -> tuple[int, str, str]:
    process = command(*args)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


@pytest.mark.parametrize(
    ("age", "said"),
    [
        ("0d", "must be more than 0"),
        ("banana", "invalid duration 'banana'"),
        ("-5d", "invalid duration '-5d'"),
        ("", "invalid duration"),
    ],
)
def test_an_age_that_is_not_one_is_refused(tmp_path: Path, age: str, said: str) -> None:
    code, _, err = clean(f"--older-than={age}", "--db", f"sqlite:///{tmp_path / 's.db'}")
    assert code == 2 and said in err and "Traceback" not in err
    assert not (tmp_path / "s.db").exists()


def test_a_dry_run_says_what_would_go_and_deletes_nothing(tmp_path: Path) -> None:
    fill(tmp_path / "s.db").close()
    code, out, _ = clean("--older-than", age_of(CUT), "--dry-run", "--db", str(tmp_path / "s.db"))
    assert code == 0
    assert "would delete 180 run(s) with 720 task instance(s) of every DAG" in out
    code, out, _ = clean("--older-than", "1d", "--dag-id", "d1", "--dry-run",
                         "--db", str(tmp_path / "s.db"))  # fmt: skip
    assert code == 0 and "would delete 100 run(s) with 400 task instance(s) of d1" in out
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    assert runs_left(store) == 300
    store.close()


def test_an_archive_that_cannot_be_written_deletes_nothing(tmp_path: Path) -> None:
    fill(tmp_path / "s.db").close()
    code, _, err = clean("--older-than", "1d", "--archive", str(tmp_path / "no" / "a.jsonl.gz"),
                         "--db", str(tmp_path / "s.db"))  # fmt: skip
    assert code == 1 and "cannot write archive" in err and "Traceback" not in err
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = clean("--older-than", "1d", "--archive", str(tmp_path / "notes.txt"),
                         "--db", str(tmp_path / "s.db"))  # fmt: skip
    assert code == 1 and "is not a gzip archive" in err
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    assert runs_left(store) == 300
    store.close()


def test_killed_mid_clean_it_leaves_whole_runs_and_finishes_when_run_again(
    tmp_path: Path,
) -> None:
    store = fill(tmp_path / "s.db", runs=3_000)
    before = statistics(store)
    store.close()
    archive = tmp_path / "old.jsonl.gz"
    args = ("--older-than", age_of(BASE + timedelta(hours=2_000)), "--archive", str(archive),
            "--db", str(tmp_path / "s.db"))  # fmt: skip
    process = command(*args)
    watch = sqlite3.connect(tmp_path / "s.db", timeout=30)

    def deleting() -> bool:
        assert process.poll() is None, "the clean-up ended before it could be killed"
        return bool(watch.execute("SELECT COUNT(*) FROM dag_runs").fetchone()[0] < 9_000)

    poll_until(deleting, timeout=60, interval=0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    watch.close()
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    left = runs_left(store)
    assert 3_000 < left < 9_000, left
    assert whole(store) and statistics(store) == before
    store.close()
    code, out, err = clean(*args)
    assert code == 0, err
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    assert runs_left(store) == 3_000
    assert whole(store) and statistics(store) == before
    store.close()
    archived = {(x["dag_id"], x["run_id"]) for x in read_archive(archive)}
    assert archived == {(f"d{d}", f"r{n}") for d in range(3) for n in range(2_000)}
    assert "deleted" in out and "archived" in out


def test_a_file_made_before_incremental_vacuum_is_switched_over_by_db_vacuum(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    older = sqlite3.connect(path)  # a file whose first table came before the switch
    older.execute("CREATE TABLE made_by_an_older_version (x)")
    older.close()
    fill(path).close()
    code, out, _ = clean("--older-than", "1d", "--db", str(path))
    assert code == 0 and "deleted 300 run(s)" in out and "gave" not in out
    size = path.stat().st_size
    done = subprocess.run(
        [sys.executable, "-m", "pipeline_core", "db", "vacuum", "--db", str(path)],
        capture_output=True, text=True, cwd=ROOT, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert done.returncode == 0 and "MiB back to the file system" in done.stdout
    assert path.stat().st_size < size
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    check.close()
