"""DAG records and import errors in SQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipeline_core.errors import NotFound
from pipeline_core.model import iso
from pipeline_core.store.dags import DagVersion
from pipeline_core.store.sql import versions
from pipeline_core.store.sql.assets import set_references
from pipeline_core.store.sql.common import dag_event, to_json
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.rows import (
    DAG_COLUMNS,
    DAG_LIST_COLUMNS,
    LISTED_KEYS,
    dag_fields,
    dag_from_row,
    like_escape,
    paged,
    same_dag,
)
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import DagRecord, ImportError_, Page


def searched_text(record: DagRecord) -> str:
    """What ``?q=`` searches: the id and description, lower-cased, apart (a unit separator)."""
    return f"{record.dag_id}\x1f{record.description or ''}".lower()


class DagsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def upsert_dag(self, record: DagRecord, *, source: str | None = None) -> DagRecord:
        tags = to_json(list(record.tags), "tags")
        definition = None if record.definition is None else to_json(record.definition, "definition")
        listed = None
        if record.definition is not None:
            shown = {k: record.definition[k] for k in LISTED_KEYS if k in record.definition}
            listed = to_json(shown, "definition")

        def work(tx: Tx, pending: Pending) -> DagRecord:
            now = self.sql.clock()
            row = tx.one(f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?", (record.dag_id,))
            existing = dag_from_row(row) if row else None
            paused = existing.is_paused if existing else record.is_paused
            stored = DagRecord(**{**dag_fields(record), "is_paused": paused})
            if existing is not None and same_dag(existing, stored):
                return existing
            tx.run(
                f"INSERT INTO dags ({DAG_COLUMNS}, search, listed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (dag_id) DO UPDATE SET is_active = excluded.is_active, "
                "fileloc = excluded.fileloc, schedule = excluded.schedule, "
                "timezone = excluded.timezone, description = excluded.description, "
                "tags = excluded.tags, definition_hash = excluded.definition_hash, "
                "definition = excluded.definition, task_count = excluded.task_count, "
                "last_parsed_at = excluded.last_parsed_at, search = excluded.search, "
                "listed = excluded.listed",
                (
                    stored.dag_id, stored.is_paused, stored.is_active, stored.fileloc,
                    stored.schedule, stored.timezone, stored.description, tags,
                    stored.definition_hash, definition, stored.task_count,
                    iso(stored.last_parsed_at), searched_text(stored), listed,
                ),
            )  # fmt: skip
            set_references(tx, stored.dag_id, record.definition)
            versions.keep_version(tx, stored, definition, source)
            self.sql.append(
                tx,
                pending,
                [dag_event(stored, "created" if existing is None else "updated", now)],
                now,
            )
            return stored

        result: DagRecord = self.sql.write(work)
        return result

    def get_dag(self, dag_id: str) -> DagRecord:
        row = self.sql.read(
            lambda tx: tx.one(f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?", (dag_id,))
        )
        if row is None:
            raise NotFound(f"no DAG '{dag_id}'")
        return dag_from_row(row)

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
        where: list[str] = []
        params: list[Any] = []
        if is_paused is not None:
            where.append("is_paused = ?")
            params.append(is_paused)
        if is_active is not None:
            where.append("is_active = ?")
            params.append(is_active)
        if dag_id_pattern:
            where.append("LOWER(dag_id) LIKE ? ESCAPE '\\'")
            params.append(f"%{like_escape(dag_id_pattern.lower())}%")
        if search:
            where.append("search LIKE ? ESCAPE '\\'")
            params.append(f"%{like_escape(search.lower())}%")
        if within_tag is not None:
            where.append("tags LIKE ? ESCAPE '\\'")
            params.append(f"%{like_escape(json.dumps(within_tag))}%")
        if tags:
            where.append("(" + " OR ".join("tags LIKE ? ESCAPE '\\'" for _ in tags) + ")")
            params.extend(f"%{like_escape(json.dumps(t))}%" for t in tags)
        source = f"{DAG_LIST_COLUMNS} FROM dags"
        # A search matches few DAGs of a table it scans anyway: count them in that scan (a
        # tag matching half the DAGs pages faster by the key, counted apart).
        window, scans = (limit, offset), bool(search or dag_id_pattern)
        result: Page[DagRecord] = self.sql.read(
            lambda tx: paged(
                tx, source, where, params, "dag_id", window, dag_from_row, one_scan=scans
            )
        )
        return result

    def set_paused(self, dag_id: str, paused: bool) -> DagRecord:
        def work(tx: Tx, pending: Pending) -> DagRecord:
            now = self.sql.clock()
            row = tx.one(f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?", (dag_id,))
            if row is None:
                raise NotFound(f"no DAG '{dag_id}'")
            record = dag_from_row(row)
            if record.is_paused == paused:
                return record
            tx.run("UPDATE dags SET is_paused = ? WHERE dag_id = ?", (paused, dag_id))
            updated = DagRecord(**{**dag_fields(record), "is_paused": paused})
            self.sql.append(
                tx, pending, [dag_event(updated, "paused" if paused else "unpaused", now)], now
            )
            return updated

        result: DagRecord = self.sql.write(work)
        return result

    def deactivate_missing_dags(self, active_dag_ids: Sequence[str]) -> list[str]:
        keep = set(active_dag_ids)

        def work(tx: Tx, pending: Pending) -> list[str]:
            now = self.sql.clock()
            rows = tx.rows(f"SELECT {DAG_COLUMNS} FROM dags WHERE is_active = ?", (True,))
            gone = [dag_from_row(r) for r in rows if r[0] not in keep]
            for record in gone:
                tx.run("UPDATE dags SET is_active = ? WHERE dag_id = ?", (False, record.dag_id))
            inactive = [DagRecord(**{**dag_fields(r), "is_active": False}) for r in gone]
            self.sql.append(tx, pending, [dag_event(r, "deactivated", now) for r in inactive], now)
            return [r.dag_id for r in gone]

        result: list[str] = self.sql.write(work)
        return result

    def replace_import_errors(self, errors: Sequence[ImportError_]) -> None:
        rows = [(e.filename, to_json(list(e.issues), "issues"), iso(e.seen_at)) for e in errors]

        def work(tx: Tx, _: Pending) -> None:
            tx.run("DELETE FROM import_errors")
            tx.many("INSERT INTO import_errors (filename, issues, seen_at) VALUES (?, ?, ?)", rows)

        self.sql.write(work)

    def list_import_errors(self) -> list[ImportError_]:
        sql = "SELECT filename, issues, seen_at FROM import_errors ORDER BY filename"
        rows = self.sql.read(lambda tx: tx.rows(sql))
        return [ImportError_(r[0], tuple(json.loads(r[1])), parse_ts(r[2])) for r in rows]

    def list_versions(self, dag_id: str, *, limit: int = 100, offset: int = 0) -> Page[DagVersion]:
        result: Page[DagVersion] = self.sql.read(
            lambda tx: versions.list_versions(tx, dag_id, limit, offset)
        )
        return result

    def get_version(self, dag_id: str, version: str) -> DagVersion:
        result: DagVersion = self.sql.read(lambda tx: versions.get_version(tx, dag_id, version))
        return result
