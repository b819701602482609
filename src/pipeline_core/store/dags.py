"""The store's part for DAGs (``store.dags``): their records, pause state, the import errors
of DAG files, and every version each DAG has had."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pipeline_core.store.types import DagRecord, ImportError_, Page


@dataclass(frozen=True, slots=True)
class DagVersion:
    """One distinct definition of a DAG: its content hash, when it was first seen, the file it
    came from and that file's text then. Versions are never deleted with their file, so the
    runs that ran them stay readable. A listing leaves ``source`` and ``definition`` out."""

    dag_id: str
    version: str
    first_seen: datetime
    fileloc: str | None
    task_count: int
    source: str | None = None
    definition: Mapping[str, Any] | None = None


class DagStore(Protocol):
    """DAG records, their pause state, the import errors of DAG files and DAG versions."""

    def upsert_dag(self, record: DagRecord, *, source: str | None = None) -> DagRecord:
        """Insert or update a DAG's metadata (never its pause state once stored), and keep
        its definition as a version (``record.definition_hash``) with ``source``, the text of
        its file, if that version is new.

        Appends ``dag.updated`` only when something changed. Returns the stored record.
        """
        ...

    def get_dag(self, dag_id: str) -> DagRecord: ...

    def list_dags(
        self,
        *,
        tags: Sequence[str] = (),
        is_paused: bool | None = None,
        is_active: bool | None = None,
        dag_id_pattern: str | None = None,
        limit: int = 100,
        offset: int = 0,
        within_tag: str | None = None,
        search: str | None = None,
    ) -> Page[DagRecord]:
        """DAGs ordered by ``dag_id``; ``tags`` matches DAGs having any of them, ``within_tag``
        only DAGs having that one (an API token's scope); the pattern is a case-insensitive
        substring of the id, ``search`` one of the id or the description. A listed record's
        ``definition`` holds only what a listing shows of it — its ``start_date``,
        ``end_date`` and ``assets`` — (``get_dag`` has it whole)."""
        ...

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        """Appends ``dag.updated`` when the state changes."""
        ...

    def deactivate_missing_dags(self, active_dag_ids: Sequence[str]) -> list[str]:
        """Mark every active DAG not in ``active_dag_ids`` inactive; returns their ids."""
        ...

    def replace_import_errors(self, errors: Sequence[ImportError_]) -> None:
        """Make ``errors`` the complete list of files that currently fail to load."""
        ...

    def list_import_errors(self) -> list[ImportError_]:
        """Files that failed to load, by file name."""
        ...

    def list_versions(self, dag_id: str, *, limit: int = 100, offset: int = 0) -> Page[DagVersion]:
        """A DAG's versions, newest first (``NotFound`` for a DAG the store never had)."""
        ...

    def get_version(self, dag_id: str, version: str) -> DagVersion:
        """One version with its source and definition, by its hash or a prefix of at least 6
        characters of it; ``NotFound`` if none matches, ``InvalidRequest`` if several do."""
        ...
