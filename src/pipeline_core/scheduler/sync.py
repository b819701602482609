"""Keep the store in step with the DAGs folder: records, definitions, import errors."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path

from pipeline_core.dag.bag import DagFile, load_folder
from pipeline_core.dag.model import DAG, EXECUTORS
from pipeline_core.dag.serialize import dag_to_dict, definition_hash
from pipeline_core.errors import Issue
from pipeline_core.model import utcnow
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord, ImportError_

log = logging.getLogger("pipeline_core.scheduler")


class DagSync:
    """Loads the folder and writes what changed. A file that stops loading keeps its last
    good DAGs (and its errors are reported); a DAG whose file is gone becomes inactive.
    A DAG with a task for an executor the engine does not have (``celery`` without a broker)
    does not load: its file reports why."""

    def __init__(
        self,
        store: Store,
        folder: str | Path,
        *,
        executors: Collection[str] = EXECUTORS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.clock = clock
        self.folder = str(folder)
        self.executors = tuple(executors)
        self._last_good: dict[str, DagFile] = {}
        self.dags: dict[str, DAG] = {}
        self._reported: set[str] = set()

    def refresh(self) -> dict[str, DAG]:
        bag = load_folder(self.folder)
        dags: dict[str, DAG] = {}
        sources: dict[str, str | None] = {}
        errors = []
        now = self.clock()
        files = [self._usable(file) for file in bag.files]
        for file in files:
            if file.issues:
                errors.append(ImportError_(file.path, tuple(i.to_dict() for i in file.issues), now))
            if file.dags:
                self._last_good[file.path] = file
            kept = file if file.dags or not file.issues else self._last_good.get(file.path, file)
            for dag in kept.dags:
                if dag.dag_id not in dags:
                    dags[dag.dag_id], sources[dag.dag_id] = dag, kept.source
        for path in [p for p in self._last_good if not Path(p).exists()]:
            del self._last_good[path]
        for dag in dags.values():
            self.store.dags.upsert_dag(dag_record(dag, now), source=sources[dag.dag_id])
        self.store.dags.deactivate_missing_dags(list(dags))
        self.store.dags.replace_import_errors(errors)
        self._report(files)
        self.dags = dags
        return dags

    def _report(self, files: Collection[DagFile]) -> None:
        """Log each load error once, when it appears (it stays listed in the store)."""
        now = {str(issue) for file in files for issue in file.issues}
        for text in sorted(now - self._reported):
            log.warning("DAG load error: %s", text)
        self._reported = now

    def _usable(self, file: DagFile) -> DagFile:
        kept: list[DAG] = []
        issues = list(file.issues)
        for dag in file.dags:
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
