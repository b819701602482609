"""A clean-up over a real SQLite file: old runs go with every row, in archived batches, the
statistics stay, the event log is trimmed, space is given back; a stopped clean-up carries on,
and one racing clears keeps what was cleared."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import iso
from pipeline_core.retention.archive import Archive, read_archive
from pipeline_core.retention.clean import Cleaner, CleanReport
from pipeline_core.state import RunState
from pipeline_core.store.types import EventQuery
from tests.retention.history import BASE, fill, runs_left, statistics, whole

CUT = BASE + timedelta(hours=60)  # runs r0…r59 of each DAG ended before it


def test_a_clean_archives_and_deletes_old_runs_and_keeps_the_statistics(tmp_path: Path) -> None:
    store = fill(tmp_path / "s.db")
    before = statistics(store)
    archive = Archive.open(tmp_path / "old.jsonl.gz")
    steps: list[int] = []
    report = Cleaner(store, CUT, archive=archive, slice_seconds=0.001,
                     on_step=lambda r: steps.append(r.runs)).run(BASE)  # fmt: skip
    archive.close()
    assert (report.runs, report.kept, report.stopped) == (180, 0, False)
    assert report.rows == 180 * (1 + 4 + 1 + 1 + 2)  # run, tasks, log, XCom, events
    assert len(steps) > 2  # batches, not one transaction
    assert runs_left(store) == 120 and whole(store)
    assert statistics(store) == before
    lines = list(read_archive(tmp_path / "old.jsonl.gz"))
    assert sorted((x["dag_id"], int(x["run_id"][1:])) for x in lines) == sorted(
        (f"d{d}", n) for d in range(3) for n in range(60)
    )
    first = lines[0]
    assert first["format"] == "pipeline-core-archive/1" and first["archived_at"] == iso(BASE)
    assert len(first["tables"]["task_instances"]) == 4
    assert first["tables"]["task_logs"][0]["data"].startswith("log of")
    assert store.runs.get_run("d0", "r60").state in (RunState.SUCCESS, RunState.FAILED)
    oldest = store.events.read_events(EventQuery(limit=1))[0]
    assert oldest.timestamp >= CUT
    assert report.events == 0  # every old event was a deleted run's
    store.close()


def test_space_is_given_back_and_the_event_log_trimmed(tmp_path: Path) -> None:
    store = fill(tmp_path / "s.db", runs=400)
    with store.sql.database.transaction(write=True) as tx:  # type: ignore[attr-defined]
        tx.run("UPDATE events SET run_id = NULL")  # events of no run: only age trims them
    report = Cleaner(store, BASE + timedelta(days=99), slice_seconds=0).run(BASE)
    assert report.runs == 1200 and runs_left(store) == 0
    assert report.events == 2400
    assert report.reclaimed > 1_000_000
    left = store.events.read_events(EventQuery(limit=10_000))
    assert {e.type for e in left} == {"run.deleted"} and len(left) == 1200  # told, just now
    store.close()


def test_a_stopped_clean_leaves_whole_runs_and_carries_on(tmp_path: Path) -> None:
    store = fill(tmp_path / "s.db")
    before = statistics(store)
    stop = threading.Event()

    def halt(report: CleanReport) -> None:
        if report.runs:
            stop.set()

    first = Cleaner(store, CUT, stop=stop, on_step=halt).run(BASE)
    assert first.stopped and 0 < first.runs < 180
    assert whole(store) and statistics(store) == before
    second = Cleaner(store, CUT).run(BASE)
    assert first.runs + second.runs == 180 and not second.stopped
    assert whole(store) and statistics(store) == before
    store.close()


def test_only_the_named_dags_are_cleaned(tmp_path: Path) -> None:
    store = fill(tmp_path / "s.db")
    report = Cleaner(store, CUT, dag_ids=["d1"]).run(BASE)
    assert report.runs == 60 and runs_left(store) == 240
    assert store.retention.count_old(CUT).runs == 120
    assert whole(store)
    store.close()


def test_runs_cleared_while_the_clean_runs_are_kept_whole(tmp_path: Path) -> None:
    """A clear (a run back to queued) racing the clean-up: whichever commits first wins, and
    either way no run is left without its rows."""
    store = fill(tmp_path / "s.db", runs=200)
    done = threading.Event()
    cleared: list[str] = []

    def clear() -> None:
        for number in range(0, 100, 3):
            for dag in range(3):
                try:
                    run = store.runs.get_run(f"d{dag}", f"r{number}")
                    store.runs.transition_run(run.dag_id, run.run_id, run.state, RunState.QUEUED)
                    cleared.append(f"d{dag}/r{number}")
                except (NotFound, Conflict):  # deleted first: the clean-up won
                    pass
        done.set()

    racer = threading.Thread(target=clear)
    racer.start()
    report = Cleaner(store, BASE + timedelta(hours=100), slice_seconds=0.0005).run(BASE)
    racer.join()
    assert done.is_set() and cleared
    for name in cleared:
        dag_id, run_id = name.split("/")
        assert store.runs.get_run(dag_id, run_id).state is RunState.QUEUED
    assert report.runs + len(cleared) == 300
    assert whole(store)
    store.close()
