"""Keep the store in step with the DAGs folder: records, definitions, import errors."""

from __future__ import annotations

from pathlib import Path

from pipeline_core.dag.bag import load_folder
from pipeline_core.dag.model import DAG
from pipeline_core.dag.serialize import dag_to_dict, definition_hash
from pipeline_core.model import utcnow
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord, ImportError_


class DagSync:
    """Loads the folder and writes what changed. A file that stops loading keeps its last
    good DAGs (and its errors are reported); a DAG whose file is gone becomes inactive."""

    def __init__(self, store: Store, folder: str | Path) -> None:
        self.store = store
        self.folder = str(folder)
        self._last_good: dict[str, tuple[DAG, ...]] = {}
        self.dags: dict[str, DAG] = {}

    def refresh(self) -> dict[str, DAG]:
        bag = load_folder(self.folder)
        dags: dict[str, DAG] = {}
        errors = []
        now = utcnow()
        for file in bag.files:
            if file.issues:
                errors.append(ImportError_(file.path, tuple(i.to_dict() for i in file.issues), now))
            kept = file.dags or (self._last_good.get(file.path, ()) if file.issues else ())
            if file.dags:
                self._last_good[file.path] = file.dags
            for dag in kept:
                dags.setdefault(dag.dag_id, dag)
        for path in [p for p in self._last_good if not Path(p).exists()]:
            del self._last_good[path]
        for dag in dags.values():
            self.store.upsert_dag(dag_record(dag))
        self.store.deactivate_missing_dags(list(dags))
        self.store.replace_import_errors(errors)
        self.dags = dags
        return dags


def dag_record(dag: DAG) -> DagRecord:
    definition = dag_to_dict(dag)
    return DagRecord(
        dag_id=dag.dag_id,
        is_paused=dag.is_paused,
        is_active=True,
        fileloc=dag.fileloc,
        schedule=dag.schedule,
        timezone=dag.timezone,
        description=dag.description,
        tags=dag.tags,
        definition_hash=definition_hash(definition),
        definition=definition,
        task_count=len(dag.tasks),
        last_parsed_at=utcnow(),
    )
