"""DAG versions in SQL: kept as a DAG's record changes, listed and read by hash or prefix."""

from __future__ import annotations

import json
from typing import Any

from pipeline_core.errors import InvalidRequest, NotFound
from pipeline_core.model import iso
from pipeline_core.store.dags import DagVersion
from pipeline_core.store.sql.rows import like_escape, paged
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import DagRecord, Page

VERSION_LIST_COLUMNS = "dag_id, version, first_seen, fileloc, task_count"
#: The first-seen time of a version whose DAG record had no parse time.
EPOCH = "1970-01-01T00:00:00.000000Z"
#: The shortest prefix of a hash that names a version.
MIN_PREFIX = 6


def keep_version(tx: Tx, record: DagRecord, definition: str | None, source: str | None) -> None:
    """Record ``record``'s definition as a version unless it is one already (a DAG that
    returns to an earlier definition keeps that version's first-seen time)."""
    if record.definition_hash is None or definition is None:
        return
    tx.run(
        "INSERT INTO dag_versions (dag_id, version, first_seen, fileloc, task_count, source, "
        "definition) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dag_id, version) DO NOTHING",
        (
            record.dag_id, record.definition_hash, iso(record.last_parsed_at) or EPOCH,
            record.fileloc, record.task_count, source, definition,
        ),
    )  # fmt: skip


def list_versions(tx: Tx, dag_id: str, limit: int, offset: int) -> Page[DagVersion]:
    if tx.one("SELECT 1 FROM dags WHERE dag_id = ?", (dag_id,)) is None:
        raise NotFound(f"no DAG '{dag_id}'")
    return paged(
        tx,
        f"{VERSION_LIST_COLUMNS} FROM dag_versions",
        ["dag_id = ?"],
        [dag_id],
        "first_seen DESC, version",
        (limit, offset),
        _listed,
    )


def get_version(tx: Tx, dag_id: str, version: str) -> DagVersion:
    if len(version) < MIN_PREFIX:
        raise InvalidRequest(
            f"a DAG version is its hash or a prefix of at least {MIN_PREFIX} characters of it "
            f"(got {version!r})"
        )
    rows = tx.rows(
        f"SELECT {VERSION_LIST_COLUMNS}, source, definition FROM dag_versions "
        "WHERE dag_id = ? AND version LIKE ? ESCAPE '\\' ORDER BY version LIMIT 2",
        (dag_id, f"{like_escape(version.lower())}%"),
    )
    if not rows:
        raise NotFound(f"DAG '{dag_id}' has no version {version!r}")
    if len(rows) > 1:
        raise InvalidRequest(
            f"{version!r} is the start of several versions of DAG '{dag_id}'; give more of it"
        )
    row = rows[0]
    return DagVersion(**_fields(row), source=row[5], definition=json.loads(row[6]))


def _fields(row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "dag_id": row[0],
        "version": row[1],
        "first_seen": parse_ts(row[2]),
        "fileloc": row[3],
        "task_count": int(row[4]),
    }


def _listed(row: tuple[Any, ...]) -> DagVersion:
    return DagVersion(**_fields(row))
