"""Change detection in the DAGs folder: only new, changed and removed files are read and
written (by ``stat``, with or without the inotify watcher), and the folder's faults — a file
rewritten while read, a file replaced by a folder, a link loop, many files at once, a watcher
that cannot start — lose nothing."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

from pipeline_core.dag import bag
from pipeline_core.scheduler.scheduler import Scheduler, SchedulerSettings
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.scheduler.watch import FolderState, Watcher
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery
from tests.conftest import poll_until
from tests.scheduler.test_scheduler import FakeRunner

ONE = "tasks: {a: {type: noop}}\n"
TWO = "tasks: {a: {type: noop}, b: {type: noop, depends_on: [a]}}\n"


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    opened = open_store(f"sqlite:///{tmp_path / 'watch.db'}")
    yield opened
    opened.close()


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files read, in order."""
    read: list[str] = []
    real = bag.load_file

    def counting(path: Path, known: bag.DagFile | None = None) -> bag.DagFile:
        read.append(path.name)
        return real(path, known)

    monkeypatch.setattr("pipeline_core.scheduler.sync.load_file", counting)
    return read


def _events(store) -> int:  # type: ignore[no-untyped-def]
    return len(store.events.read_events(EventQuery(limit=100_000)))


def test_only_new_changed_and_removed_files_are_read_and_written(store, tmp_path, loads) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.yaml").write_text(ONE)
    sync = DagSync(store, folder)
    assert set(sync.refresh()) == {"a", "b", "c"} and sorted(loads) == [
        "a.yaml",
        "b.yaml",
        "c.yaml",
    ]
    loads.clear()
    before = _events(store)
    same = sync.refresh()
    assert loads == [] and _events(store) == before and same is sync.dags  # nothing read or written
    (folder / "b.yaml").write_text(TWO)
    (folder / "d.yaml").write_text(ONE)
    (folder / "c.yaml").unlink()
    dags = sync.refresh()
    assert sorted(loads) == ["b.yaml", "d.yaml"]
    assert set(dags) == {"a", "b", "d"} and store.dags.get_dag("b").task_count == 2
    assert store.dags.get_dag("c").is_active is False
    changes = [e.payload["change"] for e in store.events.read_events(EventQuery(after_seq=before))]
    assert sorted(changes) == ["created", "deactivated", "updated"]  # d, c, b: nothing for a


def test_the_same_size_rewritten_is_seen_and_a_rename_too(store, tmp_path, loads) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    path = folder / "x.yaml"
    path.write_text("tasks: {a: {type: noop}}\n")
    sync = DagSync(store, folder)
    sync.refresh()
    path.write_text("tasks: {z: {type: noop}}\n")  # same size; a new modification time
    os.utime(path, ns=(1, path.stat().st_mtime_ns + 1_000_000))
    assert list(sync.refresh()["x"].task_dict) == ["z"]
    path.rename(folder / "y.yaml")
    dags = sync.refresh()
    assert set(dags) == {"y"} and store.dags.get_dag("x").is_active is False


def test_a_file_replaced_by_a_folder_and_a_link_loop(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "swap.yaml").write_text(ONE)
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # never walked into
    sync = DagSync(store, folder)
    assert set(sync.refresh()) == {"swap"}
    (folder / "swap.yaml").unlink()
    (folder / "swap.yaml").mkdir()
    (folder / "swap.yaml" / "inner.yaml").write_text(ONE)
    assert set(sync.refresh()) == {"inner"}
    assert store.dags.get_dag("swap").is_active is False


def test_a_file_rewritten_while_read_is_read_again(store, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    path = folder / "racy.yaml"
    path.write_text(ONE)
    real = bag.load_file
    rewrites = iter([TWO])

    def rewritten_meanwhile(target: Path, known: bag.DagFile | None = None) -> bag.DagFile:
        loaded = real(target, known)  # what was read: the first text
        for text in rewrites:  # then the file changes before the refresh ends
            target.write_text(text)
        return loaded

    monkeypatch.setattr("pipeline_core.scheduler.sync.load_file", rewritten_meanwhile)
    sync = DagSync(store, folder)
    assert list(sync.refresh()["racy"].task_dict) == ["a"]  # whole, never half of each
    assert list(sync.refresh()["racy"].task_dict) == ["a", "b"]  # the new text, next time


def test_a_thousand_files_at_once_then_a_hint_reads_just_one(store, tmp_path, loads) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    sync = DagSync(store, folder)
    sync.refresh()
    for index in range(1000):
        (folder / f"f{index:04d}.yaml").write_text(ONE)
    assert len(sync.refresh()) == 1000 and len(loads) == 1000
    loads.clear()
    (folder / "f0007.yaml").write_text(TWO)
    sync.refresh([str(folder / "f0007.yaml"), str(folder / ".hidden.yaml")])
    assert loads == ["f0007.yaml"] and store.dags.get_dag("f0007").task_count == 2


def test_folder_state_looks_only_at_the_hinted_paths(tmp_path) -> None:
    root = tmp_path.resolve()
    (root / "keep.yaml").write_text(ONE)
    (root / "sub").mkdir()
    (root / "sub" / "deep.py").write_text("")
    (root / "notes.txt").write_text("")
    state = FolderState(root)
    changed, gone = state.changes()
    assert sorted(Path(p).name for p in changed) == ["deep.py", "keep.yaml"] and gone == []
    (root / "keep.yaml").unlink()
    (root / "sub" / "deep.py").unlink()
    assert state.changes([str(root / "sub")]) == ([], [str(root / "sub" / "deep.py")])
    assert state.changes([str(root / "keep.yaml")]) == ([], [str(root / "keep.yaml")])


def test_the_watcher_tells_of_a_change_and_the_scheduler_loads_it_at_once(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "w.yaml").write_text(ONE)
    scheduler = Scheduler(store, FakeRunner(store), str(folder),
                          settings=SchedulerSettings(rescan_interval=3600)).start()  # fmt: skip
    try:
        assert scheduler.watch is not None and scheduler.watch.watching
        (folder / "w.yaml").write_text(TWO)
        poll_until(lambda: store.dags.get_dag("w").task_count == 2, timeout=5)
        (folder / "new.yaml").write_text(ONE)
        poll_until(lambda: "new" in scheduler.dags, timeout=5)
    finally:
        scheduler.stop()


def test_a_watcher_that_cannot_start_warns_and_the_rescans_go_on(store, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    def refused() -> object:
        raise OSError(28, "inotify watch limit reached")

    seen: list[set[str]] = []
    watcher = Watcher(tmp_path, seen.append)
    with caplog.at_level(logging.WARNING, logger="pipeline_core.scheduler"):
        assert watcher.start(observer=refused) is False
    assert "inotify watch limit reached" in caplog.text and "every rescan" in caplog.text
    watcher.stop()  # nothing to stop: no error
    folder = tmp_path / "dags"
    folder.mkdir()
    settings = SchedulerSettings(rescan_interval=0.05, watch=False)
    scheduler = Scheduler(store, FakeRunner(store), str(folder), settings=settings).start()
    try:
        (folder / "late.yaml").write_text(ONE)
        poll_until(lambda: "late" in scheduler.dags, timeout=5)
    finally:
        scheduler.stop()


def test_a_real_watcher_reports_paths_from_its_thread(tmp_path) -> None:
    heard = threading.Event()
    paths: set[str] = set()

    def report(changed: set[str]) -> None:
        paths.update(changed)
        heard.set()

    watcher = Watcher(tmp_path.resolve(), report)
    assert watcher.start()
    try:
        (tmp_path / "x.yaml").write_text(ONE)
        assert heard.wait(5)
        assert str(tmp_path.resolve() / "x.yaml") in paths
    finally:
        watcher.stop()


def test_a_large_folder_loads_in_steps_and_deactivates_nothing_before_the_end(
    store, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    for name in ("a", "b", "c"):
        (folder / f"{name}.yaml").write_text(ONE)
    DagSync(store, folder).refresh()  # an earlier process knew all three
    (folder / "c.yaml").unlink()
    sync = DagSync(store, folder)  # a restart
    assert list(sync.refresh(budget=0)) == ["a"] and sync.loading  # one file a step at least
    assert store.dags.get_dag("b").is_active and store.dags.get_dag("c").is_active
    sync.refresh([str(folder / "a.yaml")], budget=0)  # a watcher's news does not end the load
    assert sync.loading
    assert set(sync.refresh(budget=0)) == {"a", "b"} and not sync.loading
    assert store.dags.get_dag("c").is_active is False  # gone: told once all were read


def test_a_file_that_could_not_be_read_is_read_again_at_the_next_look(
    store, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "later.yaml").write_text(ONE)
    real = bag.load_file
    refusals = iter([bag.DagFile(str(folder / "later.yaml"), issues=(bag.Issue("cannot read file: [Errno 24] Too many open files"),))])  # fmt: skip

    def out_of_descriptors(path: Path, known: bag.DagFile | None = None) -> bag.DagFile:
        return next(refusals, None) or real(path, known)

    monkeypatch.setattr("pipeline_core.scheduler.sync.load_file", out_of_descriptors)
    sync = DagSync(store, folder)
    assert sync.refresh() == {}  # not read: its stat is not kept as seen
    assert set(sync.refresh()) == {"later"}  # the file is unchanged, and read now


def test_a_folder_that_cannot_be_listed_changes_nothing(store, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import errno

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "kept.yaml").write_text(ONE)
    sync = DagSync(store, folder)
    sync.refresh()

    def no_descriptors(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EMFILE, "Too many open files", str(folder))

    monkeypatch.setattr("os.scandir", no_descriptors)
    assert set(sync.refresh()) == {"kept"}  # a warning; nothing is gone
    monkeypatch.undo()
    assert store.dags.get_dag("kept").is_active and set(sync.refresh()) == {"kept"}
