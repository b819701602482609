"""Claims and reports of tries that run on remote workers, in SQL.

A claim is one conditional insert: it is taken only while the task instance is running that
try, so a try that was cancelled or retried meanwhile is never started, and the primary key
lets exactly one worker win a message delivered twice."""

from __future__ import annotations

from typing import Any

from pipeline_core.events import Event
from pipeline_core.model import TaskKey, iso
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import TryClaim, TryReport

_COLUMNS = (
    "dag_id, run_id, task_id, map_index, try_number, submission, worker_id, claimed_at, reported_at"
)
_ONE = (
    "dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ? AND try_number = ? "
    "AND submission = ?"
)


class TriesSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def claim_try(
        self, key: TaskKey, try_number: int, submission: str, worker_id: str
    ) -> TryClaim | None:
        def work(tx: Tx, pending: Pending) -> TryClaim | None:
            now = self.sql.clock()
            won = tx.run(
                f"INSERT INTO try_claims ({_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, NULL "
                "WHERE EXISTS (SELECT 1 FROM task_instances WHERE dag_id = ? AND run_id = ? "
                "AND task_id = ? AND map_index = ? AND state = 'running' AND try_number = ?) "
                "ON CONFLICT DO NOTHING",
                (*_ids(key), try_number, submission, worker_id, iso(now), *_ids(key), try_number),
            )
            if won:
                payload = {"try_number": try_number, "worker": worker_id}
                payload["map_index"] = key.map_index
                self.sql.append(tx, pending, [("task.claimed", payload, *_ids(key)[:3])], now)
                return TryClaim(key, try_number, submission, worker_id, now)
            row = tx.one(
                f"SELECT {_COLUMNS} FROM try_claims WHERE {_ONE}",
                (*_ids(key), try_number, submission),
            )
            return None if row is None else _claim(row)

        result: TryClaim | None = self.sql.write(work)
        return result

    def report_try(self, key: TaskKey, try_number: int, report: TryReport) -> Event:
        def work(tx: Tx, pending: Pending) -> Event:
            now = self.sql.clock()
            tx.run(
                f"UPDATE try_claims SET reported_at = ? WHERE {_ONE} AND reported_at IS NULL",
                (iso(now), *_ids(key), try_number, report.submission or ""),
            )
            payload: dict[str, Any] = {
                "try_number": try_number,
                "outcome": report.outcome,
                "error": report.error,
                "follow": None if report.follow is None else list(report.follow),
                "poke_ok": report.poke_ok,
                "worker": report.worker_id,
                "map_index": key.map_index,
            }
            item = ("task.reported", payload, *_ids(key)[:3])
            return self.sql.append(tx, pending, [item], now)[0]

        event: Event = self.sql.write(work)
        return event

    def list_claims(self, worker_id: str | None = None) -> list[TryClaim]:
        sql = f"SELECT {_COLUMNS} FROM try_claims"
        params: tuple[Any, ...] = ()
        if worker_id is not None:
            sql, params = sql + " WHERE worker_id = ?", (worker_id,)
        rows = self.sql.read(lambda tx: tx.rows(sql + " ORDER BY claimed_at", params))
        return [_claim(row) for row in rows]

    def prune_claims(self) -> int:
        pruned: int = self.sql.write(
            lambda tx, _: tx.run(
                "DELETE FROM try_claims WHERE reported_at IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM task_instances ti WHERE ti.dag_id = try_claims.dag_id "
                "AND ti.run_id = try_claims.run_id AND ti.task_id = try_claims.task_id "
                "AND ti.map_index = try_claims.map_index "
                "AND ti.state = 'running' AND ti.try_number = try_claims.try_number)"
            )
        )
        return pruned


def _ids(key: TaskKey) -> tuple[str, str, str, int]:
    return (key.dag_id, key.run_id, key.task_id, key.map_index)


def _claim(row: tuple[Any, ...]) -> TryClaim:
    reported = None if row[8] is None else parse_ts(row[8])
    key = TaskKey(row[0], row[1], row[2], int(row[3]))
    return TryClaim(key, int(row[4]), row[5], row[6], parse_ts(row[7]), reported)
