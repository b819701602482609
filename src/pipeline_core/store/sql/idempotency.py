"""Idempotency keys in SQL: each held by the run it created, in that run's transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from pipeline_core.errors import Conflict
from pipeline_core.model import DagRun, IdempotencyKey, iso
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import IdempotencyRecord


def hold_key(tx: Tx, run: DagRun, idempotency: IdempotencyKey, now: datetime) -> None:
    """Store the key for ``run``, or ``Conflict`` while a live run holds it. Expired keys,
    and keys whose run was deleted, are dropped on the way."""
    at = iso(now)
    tx.run("DELETE FROM idempotency_keys WHERE expires_at <= ?", (at,))
    held = tx.one(
        "SELECT k.run_id FROM idempotency_keys k JOIN dag_runs r "
        "ON r.dag_id = k.dag_id AND r.run_id = k.run_id WHERE k.dag_id = ? AND k.key = ?",
        (run.dag_id, idempotency.key),
    )
    if held is not None:
        raise Conflict(
            f"idempotency key {idempotency.key!r} is held by run '{held[0]}' of DAG '{run.dag_id}'"
        )
    # Only a dead key (its run deleted without it): a live one a concurrent trigger just
    # committed must stay, so this trigger's insert conflicts with it.
    tx.run(
        "DELETE FROM idempotency_keys WHERE dag_id = ? AND key = ? AND NOT EXISTS "
        "(SELECT 1 FROM dag_runs r WHERE r.dag_id = idempotency_keys.dag_id "
        "AND r.run_id = idempotency_keys.run_id)",
        (run.dag_id, idempotency.key),
    )
    expires = now + timedelta(seconds=idempotency.ttl_seconds)
    tx.run(
        "INSERT INTO idempotency_keys (dag_id, key, run_id, fingerprint, created_at, expires_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (run.dag_id, idempotency.key, run.run_id, idempotency.fingerprint, at, iso(expires)),
    )


def find_key(tx: Tx, dag_id: str, key: str, now: datetime) -> IdempotencyRecord | None:
    """The live key ``key`` of ``dag_id``: unexpired, and its run still there."""
    row = tx.one(
        "SELECT k.run_id, k.fingerprint, k.created_at, k.expires_at "
        "FROM idempotency_keys k JOIN dag_runs r "
        "ON r.dag_id = k.dag_id AND r.run_id = k.run_id "
        "WHERE k.dag_id = ? AND k.key = ? AND k.expires_at > ?",
        (dag_id, key, iso(now)),
    )
    if row is None:
        return None
    return IdempotencyRecord(dag_id, key, row[0], row[1], parse_ts(row[2]), parse_ts(row[3]))
