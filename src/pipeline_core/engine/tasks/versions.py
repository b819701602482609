"""The DAG versions the engine's held runs need besides the latest: read from the store and
rebuilt from the text their file had (``dag.versions``), the most recent few kept."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

from pipeline_core.dag.model import DAG
from pipeline_core.dag.versions import VersionUnavailable, rebuild, short
from pipeline_core.errors import NotFound
from pipeline_core.model import DagRun
from pipeline_core.store.base import Store

logger = logging.getLogger("pipeline_core.engine")
#: Rebuilt versions kept (each a DAG object; a Python file's module stays loaded).
KEEP = 32


class VersionLoader:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._kept: OrderedDict[tuple[str, str], DAG] = OrderedDict()
        self._lock = threading.Lock()

    def dag_for(self, run: DagRun, latest: DAG | None) -> DAG | None:
        """The DAG version ``run`` runs, or ``None`` when that is ``latest`` (or the run was
        made before versions were kept). ``VersionUnavailable`` names the version that cannot
        be rebuilt."""
        version = run.dag_version
        if version is None or (latest is not None and latest.version == version):
            return None
        return self.version(run.dag_id, version)

    def version(self, dag_id: str, version: str) -> DAG:
        """DAG version ``version`` (its full hash) of ``dag_id``, rebuilt from the store;
        ``VersionUnavailable`` says why it cannot be."""
        key = (dag_id, version)
        with self._lock:  # a Celery worker's tries ask from several threads
            dag = self._kept.get(key)
            if dag is not None:
                self._kept.move_to_end(key)
                return dag
            try:
                stored = self.store.dags.get_version(dag_id, version)
            except NotFound:
                raise VersionUnavailable(
                    f"version {short(version)} of DAG '{dag_id}' is not in the store"
                ) from None
            dag = rebuild(dag_id, stored.version, stored.fileloc, stored.source)
            self._kept[key] = dag
            if len(self._kept) > KEEP:
                self._kept.popitem(last=False)
            return dag

    def dag_or_latest(self, run: DagRun, latest: DAG | None) -> DAG | None:
        """``dag_for``, or ``None`` (the latest) with a warning when the version cannot be
        rebuilt: a run taken over is never left stuck for want of its version."""
        try:
            return self.dag_for(run, latest)
        except VersionUnavailable as exc:
            logger.warning("run '%s' continues with the latest version: %s", run.run_id, exc)
            return None
