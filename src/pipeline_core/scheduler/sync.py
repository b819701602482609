"""Keep the store in step with the DAGs folder: records, definitions, import errors."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline_core.dag.bag import (
    YAML_SUFFIXES,
    DagFile,
    add_to_sys_path,
    in_order,
    load_file,
    merge,
)
from pipeline_core.dag.model import DAG, EXECUTORS
from pipeline_core.dag.packed import pack
from pipeline_core.dag.serialize import dag_to_dict, definition_hash
from pipeline_core.errors import Issue
from pipeline_core.model import utcnow
from pipeline_core.scheduler.parsed import ParsedFiles
from pipeline_core.scheduler.watch import FolderState
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord, ImportError_

log = logging.getLogger("pipeline_core.scheduler")


class DagSync:
    """Keeps the store in step with the folder, reading only what changed: a file whose
    ``stat`` (time, size, inode) is as last seen is not read again, and a refresh that finds
    nothing new writes nothing. A file that stops loading keeps its last good DAGs (and its
    errors are reported); a DAG whose file is gone becomes inactive. A DAG with a task for an
    executor the engine does not have (``celery`` without a broker) does not load: its file
    reports why.

    With ``parsed_cache`` (a file: ``scheduler.parsed``), a YAML file whose text is as when
    it was last parsed is not parsed again, across restarts too; the cache is written once
    every file was read, then after changes (at most every ``SAVE_EVERY`` seconds)."""

    SAVE_EVERY = 10.0
    PER_SECOND = 2_500

    def __init__(
        self,
        store: Store,
        folder: str | Path,
        *,
        executors: Collection[str] = EXECUTORS,
        clock: Callable[[], datetime] = utcnow,
        parsed_cache: Path | None = None,
    ) -> None:
        self.store = store
        self.parsed = ParsedFiles(parsed_cache) if parsed_cache is not None else None
        self._raw: dict[str, DagFile] = {}  # each file's load, before ``_usable``
        self._unsaved, self._saved_at = False, float("-inf")
        #: The store's records at this process's first write, until each DAG is compared.
        self._held: dict[str, DagRecord] | None = None
        self.clock = clock
        self.root = Path(folder).resolve()
        self.executors = tuple(executors)
        self.state = FolderState(self.root)
        #: Each file's last load, and the last one that had DAGs (kept while it fails).
        self._files: dict[str, DagFile] = {}
        self._last_good: dict[str, DagFile] = {}
        self._errors: list[ImportError_] | None = None
        self.dags: dict[str, DAG] = {}
        #: Whether files wait to be loaded (a refresh's budget ran out).
        self.loading = False
        self._reported: set[str] = set()

    def refresh(
        self, hints: Collection[str] | None = None, budget: float | None = None
    ) -> dict[str, DAG]:
        """Load the files new or changed since the last refresh — of the whole folder, or of
        ``hints`` (paths a watcher reported) — and write what that changes; the DAGs now.

        With a ``budget`` (seconds), loading stops once it is spent, or once ``PER_SECOND``
        files a second of it were loaded (kept files load far faster than their DAGs are then
        scheduled, which the budget must bound too), and the DAGs loaded so far are written;
        ``loading`` then says more files wait, and the next refresh goes on with them. Until
        every file was loaded once, no DAG is deactivated (a restart does not take the DAGs of
        files not read yet out of the store)."""
        changed: list[str] = []
        missing: list[DagFile] = []
        if not self.root.is_dir():
            said = f"DAGs folder {str(self.root)!r} does not exist or is not a folder"
            missing.append(DagFile(str(self.root), issues=(Issue(said, file=str(self.root)),)))
            gone = list(self.state.seen)
            self.state.seen.clear()
        else:
            add_to_sys_path(self.root)
            try:
                changed, gone = self.state.changes(hints)
            except OSError as exc:  # no descriptor left, say: nothing is gone, look again later
                log.warning(
                    "cannot list the DAGs folder (%s); looking again at the next rescan", exc
                )
                return self.dags
        if self._errors is not None and not changed and not gone and not missing:
            self._keep_parsed(False)
            return self.dags
        for path in gone:
            self._raw.pop(path, None)
            self._files.pop(path, None)
            self._last_good.pop(path, None)
        started, rest, parsed = time.monotonic(), [], bool(gone)
        fresh: list[DAG] = []
        for index, path in enumerate(changed):
            spent = budget is not None and (
                index >= budget * self.PER_SECOND or time.monotonic() - started > budget
            )
            if spent and index:
                rest = changed[index:]
                self.state.unsee(rest)  # the next refresh reads them
                break
            known = self.parsed.get(path) if self.parsed is not None else None
            raw = self._raw[path] = load_file(Path(path), known)
            parsed = parsed or (raw is not known and path.endswith(YAML_SUFFIXES))
            loaded = self._files[path] = self._usable(raw)
            if path.endswith(YAML_SUFFIXES):  # a Python file's functions stay as they are
                fresh.extend(raw.dags)
            if loaded.source is None:  # not read (no descriptor left, say): read it next time
                self.state.unsee([path])
            if loaded.dags:
                self._last_good[path] = loaded
        if hints is None or rest:  # only a whole look finds that nothing waits
            self.loading = bool(rest)
        self._publish(missing)
        for dag in fresh:  # once written: decoded again when a run or a due schedule reads it
            pack(dag)
        self._keep_parsed(parsed)
        return self.dags

    def _keep_parsed(self, changed: bool) -> None:
        """Write the cache of parsed files once every file was read, when a file was parsed
        or removed since it was last written (a restart that parsed nothing writes nothing),
        at most every ``SAVE_EVERY`` seconds."""
        if self.parsed is None:
            return
        self._unsaved = self._unsaved or changed
        now = time.monotonic()
        if self._unsaved and not self.loading and now - self._saved_at >= self.SAVE_EVERY:
            self.parsed.save(self._raw.values())
            self._unsaved, self._saved_at = False, now

    def _publish(self, missing: list[DagFile]) -> None:
        """Write the DAGs that are new or changed, deactivate the ones gone, and replace the
        import errors when they changed."""
        now = self.clock()
        current = [self._files[p] for p in in_order(self._files)] + missing
        kept = [f if f.dags or not f.issues else self._last_good.get(f.path, f) for f in current]
        dags, merged = merge(kept)
        errors: list[ImportError_] = []
        said: list[Issue] = []
        for loaded, used, final in zip(current, kept, merged, strict=True):
            issues = (*loaded.issues, *final.issues[len(used.issues) :])
            if issues:
                errors.append(ImportError_(loaded.path, tuple(i.to_dict() for i in issues), now))
                said += issues
        sources = {dag.dag_id: f.source for f in merged for dag in f.dags}
        if self._held is None:  # this process's first write: every record the store has
            total = self.store.dags.list_dags(limit=1).total
            listed = self.store.dags.list_dags(limit=max(total, 1)).items
            self._held = {record.dag_id: record for record in listed}
        for dag_id, dag in dags.items():
            if self.dags.get(dag_id) is dag or _as_held(self._held.pop(dag_id, None), dag):
                continue
            self.store.dags.upsert_dag(dag_record(dag, now), source=sources.get(dag_id))
        if self.loading:  # what is not loaded yet is not gone: it waits
            self.dags = dags
            return
        self._held = {}  # every file was read: what the store had is compared
        if self._errors is None or set(dags) != set(self.dags):
            self.store.dags.deactivate_missing_dags(list(dags))
        if self._errors is None or _said(errors) != _said(self._errors):
            self.store.dags.replace_import_errors(errors)
        self._errors = errors
        self._report(said)
        self.dags = dags

    def _report(self, issues: Collection[Issue]) -> None:
        """Log each load error once, when it appears (it stays listed in the store)."""
        now = {str(issue) for issue in issues}
        for text in sorted(now - self._reported):
            log.warning("DAG load error: %s", text)
        self._reported = now

    def _usable(self, file: DagFile) -> DagFile:
        kept: list[DAG] = []
        issues = list(file.issues)
        for dag in file.dags:
            if dag.executors <= {None, *self.executors}:  # known without decoding its tasks
                kept.append(dag)
                continue
            unusable = [
                Issue(
                    f"task '{task.task_id}' of DAG '{dag.dag_id}' uses executor "
                    f"'{task.executor}', which this engine does not have"
                    + (" (start it with --broker URL)" if task.executor == "celery" else ""),
                    f"tasks.{task.task_id}.executor",
                    file.path,
                )
                for task in dag.tasks
                if task.executor is not None and task.executor not in self.executors
            ]
            issues += unusable
            if not unusable:
                kept.append(dag)
        if len(kept) == len(file.dags):
            return file
        return dataclasses.replace(file, dags=tuple(kept), issues=tuple(issues))


def _as_held(record: DagRecord | None, dag: DAG) -> bool:
    """Whether the store already has ``dag`` as it is: the same definition (by the hash a
    DAG kept from an earlier parse carries, which covers its tasks: they are not decoded)
    and the same listing fields. A DAG without that hash yet is written as usual (the store
    then compares it whole)."""
    version = vars(dag).get("version")
    if record is None or version is None or not record.is_active:
        return False
    listed = (dag.fileloc, dag.schedule, dag.timezone, dag.description, tuple(dag.tags))
    held = (record.fileloc, record.schedule, record.timezone, record.description, record.tags)
    return record.definition_hash == version and listed == held


def _said(errors: list[ImportError_]) -> list[tuple[str, tuple[Any, ...]]]:
    """What import errors say, whenever they were seen."""
    return [(e.filename, tuple(e.issues)) for e in errors]


def dag_record(dag: DAG, parsed_at: datetime) -> DagRecord:
    definition = dag_to_dict(dag)
    vars(dag).setdefault("version", definition_hash(definition))  # computed once, here
    return DagRecord(
        dag_id=dag.dag_id,
        is_paused=dag.is_paused,
        is_active=True,
        fileloc=dag.fileloc,
        schedule=dag.schedule,
        timezone=dag.timezone,
        description=dag.description,
        tags=dag.tags,
        definition_hash=dag.version,
        definition=definition,
        task_count=len(dag.tasks),
        last_parsed_at=parsed_at,
    )
