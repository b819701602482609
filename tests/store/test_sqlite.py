"""SQLite quirks: URL forms, crash safety, migrations, unusable files."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import pytest

from pipeline_core.errors import ConfigurationError, StoreUnavailable
from pipeline_core.store import open_store
from pipeline_core.store.sql.schema import SCHEMA_VERSION
from pipeline_core.store.sqlite.store import SqliteStore
from pipeline_core.store.types import EventQuery, TaskInstanceQuery
from tests.store.helpers import (
    upgrading_to_listings_reads_what_they_show,
    upgrading_to_map_indexes_keeps_every_instance,
    upgrading_to_rollups_lets_old_dags_be_searched,
    upgrading_to_task_totals_counts_the_history,
)


@pytest.mark.parametrize("form", ["sqlite:///{p}", "{p}", "file://{p}"])
def test_url_forms(tmp_path, form):
    path = tmp_path / "sub" / "x.db"
    store = open_store(form.format(p=path))
    assert isinstance(store, SqliteStore) and store.path == str(path)
    store.close()
    assert path.exists()


def test_relative_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///rel.db")
    store.close()
    assert (tmp_path / "rel.db").exists()


def test_unknown_scheme():
    with pytest.raises(ConfigurationError, match="unsupported database URL scheme 'mysql'"):
        open_store("mysql://x/y")


def test_wal_and_pragmas(tmp_path):
    store = SqliteStore(tmp_path / "p.db")
    connection = store.backend._connect()
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.close()


def test_corrupt_file_is_unavailable_with_its_url(tmp_path):
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable) as info:
        SqliteStore(path)
    assert str(path) in str(info.value)


def test_unwritable_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises((StoreUnavailable, OSError)):
        SqliteStore(blocker / "db.sqlite")


def index_names(path) -> set[str]:  # type: ignore[no-untyped-def]
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows}


def test_older_schema_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    SqliteStore(path, migrate_to=1).close()
    assert "dag_runs_by_logical_date" not in index_names(path)
    store = SqliteStore(path)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    assert "dag_runs_by_logical_date" in index_names(path)


def test_upgrading_to_task_totals_counts_the_existing_history(tmp_path):
    upgrading_to_task_totals_counts_the_history(
        lambda **options: SqliteStore(tmp_path / "v4.db", **options)
    )


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    SqliteStore(path).close()
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 5,))
        connection.commit()
    with pytest.raises(StoreUnavailable, match=f"schema version {SCHEMA_VERSION + 5}, newer"):
        SqliteStore(path)


def test_two_processes_share_one_file(tmp_path):
    path = tmp_path / "shared.db"
    code = textwrap.dedent(
        f"""
        from pipeline_core.store import open_store
        from pipeline_core.model import DagRun, TaskSpec
        from pipeline_core.state import RunState
        from datetime import datetime, UTC, timedelta
        import sys
        store = open_store({str(path)!r})
        who = sys.argv[1]
        for i in range(50):
            run = DagRun("etl", f"{{who}}-{{i}}", RunState.QUEUED, "manual", datetime(2026, 1, 1, tzinfo=UTC))
            store.runs.create_run(run, [TaskSpec("a")])
        """
    )
    SqliteStore(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", code, name]) for name in ("p1", "p2", "p3")]
    assert [p.wait(60) for p in procs] == [0, 0, 0]
    store = SqliteStore(path)
    assert store.tasks.query_task_instances(TaskInstanceQuery()).total == 150
    assert [e.seq for e in store.events.read_events(EventQuery(limit=1000))] == list(range(1, 151))
    store.close()


CRASH_CHILD = """
import sys
from datetime import UTC, datetime
from pipeline_core.state import RunState, TaskState
from pipeline_core.store import open_store
from pipeline_core.model import DagRun, TaskChange, TaskKey, TaskSpec

store = open_store(sys.argv[1])
tasks = [f"t{i}" for i in range(100000)]
n = 0
while True:
    run_id = f"r{n}"
    store.runs.create_run(DagRun("etl", run_id, RunState.QUEUED, "manual", datetime(2026, 1, 1, tzinfo=UTC)),
                     [TaskSpec(t) for t in tasks[:50]])
    for t in tasks[:50]:
        store.tasks.transition_tasks([TaskChange(TaskKey("etl", run_id, t), TaskState.QUEUED, TaskState.RUNNING)])
        store.tasks.transition_tasks([TaskChange(TaskKey("etl", run_id, t), TaskState.RUNNING, TaskState.SUCCESS)])
        print("committed", flush=True)
    n += 1
"""


@pytest.mark.slow
def test_sigkill_mid_stream_leaves_a_consistent_file(tmp_path):
    path = tmp_path / "crash.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASH_CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    for _ in range(300):  # let it commit a few hundred transitions, then kill it mid-stream
        assert child.stdout.readline()
    time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = SqliteStore(path)
    events = store.events.read_events(EventQuery(types=("task.state_changed",), limit=10_000_000))
    assert len(events) >= 600
    last_state = {}
    for event in events:
        last_state[(event.run_id, event.task_id)] = event.payload["new_state"]
    tis = store.tasks.query_task_instances(TaskInstanceQuery(limit=10_000_000)).items
    for ti in tis:  # every committed transition has its event and no event lacks its transition
        assert ti.state.value == last_state.get((ti.run_id, ti.task_id), "queued")
    seqs = [e.seq for e in store.events.read_events(EventQuery(limit=10_000_000))]
    assert seqs == list(range(1, len(seqs) + 1))
    assert store.events.event_bounds()[1] == len(seqs)
    store.close()


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path):
    code = "import sys; from pipeline_core.store import open_store; open_store(sys.argv[1]).pools.list_pools()"
    for attempt in range(3):
        path = tmp_path / f"fresh{attempt}.db"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        outcomes = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
        for p in procs:
            if p.stderr:
                p.stderr.close()
        assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes


def test_an_in_memory_store_is_one_database_for_every_thread():
    import threading

    from pipeline_core.store.types import Pool

    store = open_store("memory://")
    made = threading.Thread(target=lambda: store.pools.create_pool(Pool("from_a_thread", 3)))
    made.start()
    made.join()
    seen: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: seen.append([p.name for p in store.pools.list_pools()])
    )
    reader.start()
    reader.join()
    assert seen == [["default_pool", "from_a_thread"]]
    store.close()
    with pytest.raises(StoreUnavailable):
        store.pools.list_pools()


def test_waiting_for_events_reads_nothing_while_idle_and_wakes_on_another_process(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'wake.db'}")
    last = store.events.event_bounds()[1]
    assert store.wait_for_events(last, 0.01) is False  # binds this store's wake socket
    reads: list[object] = []
    real_read = store.backend.transaction

    def counted(write):  # type: ignore[no-untyped-def]
        reads.append(write)
        return real_read(write)

    store.backend.transaction = counted  # every read and write goes through it
    assert store.wait_for_events(last, 0.2) is False
    assert reads == []  # asleep, not polling the database
    code = (
        "import sys; from pipeline_core.store import open_store; s = open_store(sys.argv[1]); "
        "s.events.append_event('test.wake', {}); s.close()"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, store.url])
    try:
        assert store.wait_for_events(last, 30) is True
    finally:
        writer.wait(60)
    assert [e.type for e in store.events.read_events(EventQuery(after_seq=last))] == ["test.wake"]
    store.close()


def test_upgrading_to_map_indexes_keeps_every_instance(tmp_path):
    upgrading_to_map_indexes_keeps_every_instance(
        lambda **options: SqliteStore(tmp_path / "v10.db", **options)
    )


def test_upgrading_to_rollups_lets_old_dags_be_searched(tmp_path):
    upgrading_to_rollups_lets_old_dags_be_searched(
        lambda **options: SqliteStore(tmp_path / "v16.db", **options)
    )


def test_upgrading_to_listings_reads_what_they_show(tmp_path):
    upgrading_to_listings_reads_what_they_show(
        lambda **options: SqliteStore(tmp_path / "v17.db", **options)
    )
