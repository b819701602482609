"""What changed in a DAGs folder, without reading a file that did not.

``FolderState`` keeps each DAG file's ``stat`` (modification time in nanoseconds, size and
inode) and answers what is new, changed or gone since it last looked — over the whole folder,
or only over the paths a watcher reported. ``Watcher`` reports paths as the kernel tells of
them (inotify, through ``watchdog``); one that cannot start (the inotify limits reached) logs
a warning, and the periodic comparison of ``stat`` is all there is.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from pipeline_core.dag.bag import dag_files, in_order, is_dag_file

logger = logging.getLogger("pipeline_core.scheduler")
#: What tells a file's content changed without reading it.
StatKey = tuple[int, int, int]


def key_of(stat: os.stat_result) -> StatKey:
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class FolderState:
    """The DAG files below ``root`` as last seen."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: dict[str, StatKey] = {}

    def changes(self, hints: Collection[str] | None = None) -> tuple[list[str], list[str]]:
        """``(new or changed files, gone files)`` since the last call: of the whole folder, or
        of ``hints`` (files or folders a watcher named; a folder is looked at whole)."""
        found: dict[str, StatKey] = {}
        scopes: list[str] = []
        for hint in [str(self.root)] if hints is None else hints:
            if self._hidden(hint):
                continue
            scopes.append(hint)
            if os.path.isdir(hint):
                found.update((p, key_of(s)) for p, s in dag_files(Path(hint)).items())
            elif is_dag_file(os.path.basename(hint)) and os.path.isfile(hint):
                found[hint] = key_of(os.stat(hint))
        changed = in_order(p for p, k in found.items() if self.seen.get(p) != k)
        gone = [p for p in self.seen if p not in found and _within(p, scopes)]
        for path in gone:
            del self.seen[path]
        self.seen.update((p, found[p]) for p in changed)
        return changed, gone

    def unsee(self, paths: Collection[str]) -> None:
        """Forget these files were seen: the next look reports them as new."""
        for path in paths:
            self.seen.pop(path, None)

    def _hidden(self, path: str) -> bool:
        try:
            parts = Path(path).relative_to(self.root).parts
        except ValueError:
            return True  # outside the folder
        return any(part.startswith(".") or part == "__pycache__" for part in parts)


def _within(path: str, scopes: list[str]) -> bool:
    return any(path == s or path.startswith(s.rstrip(os.sep) + os.sep) for s in scopes)


class Watcher:
    """Calls ``on_change(paths)`` from its own thread as files below ``folder`` change."""

    def __init__(self, folder: Path, on_change: Callable[[set[str]], None]) -> None:
        self.folder, self.on_change = folder, on_change
        self._observer: Any = None

    def start(self, observer: Callable[[], Any] | None = None) -> bool:
        """Whether the watch started; ``False`` (with a warning) when the system refuses one."""
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        report = self.on_change

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return  # read, not changed (the loading of DAG files reads them)
                if event.is_directory and event.event_type == "modified":
                    return  # a file in it changed: that file's own event says which
                paths = {os.fsdecode(event.src_path)}
                if event.dest_path:
                    paths.add(os.fsdecode(event.dest_path))
                report(paths)

        try:
            self._observer = (observer or Observer)()
            self._observer.schedule(Handler(), str(self.folder), recursive=True)
            self._observer.start()
        except Exception as exc:  # inotify limits, a folder gone: the scans go on
            logger.warning(
                "cannot watch %s for changes (%s); looking for changes at every rescan instead",
                self.folder,
                exc,
            )
            self._observer = None
            return False
        return True

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)
            self._observer = None


class FolderWatch:
    """The paths a ``Watcher`` reported since they were last taken, and a call of ``wake``
    each time some arrive (the scheduler then loads just those)."""

    def __init__(self, folder: Path, wake: Callable[[], None]) -> None:
        self.watcher = Watcher(folder, self._report)
        self.wake = wake
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self.watching = False

    def start(self) -> bool:
        self.watching = self.watcher.start()
        return self.watching

    def stop(self) -> None:
        self.watcher.stop()
        self.watching = False

    def take(self) -> set[str]:
        with self._lock:
            paths, self._paths = self._paths, set()
        return paths

    def _report(self, paths: set[str]) -> None:
        with self._lock:
            self._paths |= paths
        self.wake()
