"""History retention in SQL: old finished runs found by key order, read whole for an archive,
and deleted with every row of theirs in one transaction each, their figures rolled up first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline_core.model import iso
from pipeline_core.store.retention import Cleaned, OldHistory, OldRun
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.rollups import roll_up
from pipeline_core.store.sql.runs import RUN_ROWS
from pipeline_core.store.sql.stats import FINISHED
from pipeline_core.store.sql.tx import Tx

#: Every table holding a run's rows by ``(dag_id, run_id)``: retention takes its events and
#: notifications with it too.
RUN_TABLES = (*RUN_ROWS, "notifications", "events")
ATTEMPTS = "notification_id IN (SELECT id FROM notifications WHERE dag_id = ? AND run_id = ?)"
_OLD = f"state IN ({', '.join('?' for _ in FINISHED)}) AND end_date < ?"


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class RetentionSql:
    """``RetentionStore`` in SQL."""

    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def old_runs(
        self, before: datetime, *, dag_ids: Sequence[str] = (), after: int = 0, limit: int = 100
    ) -> list[OldRun]:
        where, params = self._old(before, dag_ids)
        # ``state || ''`` keeps the state index out: walking the key is what keeps each page's
        # cost bounded by how far it reads, not by how many finished runs there are.
        rows = self.sql.read(
            lambda tx: tx.rows(
                f"SELECT id, dag_id, run_id FROM dag_runs WHERE id > ? AND {where} "
                "ORDER BY id LIMIT ?",
                [after, *params, limit],
            )
        )
        return [OldRun(int(pk), dag_id, run_id) for pk, dag_id, run_id in rows]

    def count_old(self, before: datetime, *, dag_ids: Sequence[str] = ()) -> OldHistory:
        where, params = self._old(before, dag_ids)
        runs, tasks = self.sql.read(
            lambda tx: tx.one(
                "SELECT COUNT(*), COALESCE(SUM((SELECT COUNT(*) FROM task_instances ti "
                f"WHERE ti.run_pk = r.id)), 0) FROM dag_runs r WHERE {where}",
                params,
            )
        )
        return OldHistory(int(runs), int(tasks))

    @staticmethod
    def _old(before: datetime, dag_ids: Sequence[str]) -> tuple[str, list[Any]]:
        where = _OLD.replace("state IN", "state || '' IN", 1)
        params: list[Any] = [*FINISHED, iso(before)]
        if dag_ids:
            where += f" AND dag_id IN ({_marks(dag_ids)})"
            params.extend(dag_ids)
        return where, params

    def run_rows(self, runs: Sequence[OldRun]) -> list[dict[str, Any]]:
        def read(tx: Tx) -> list[dict[str, Any]]:
            found = []
            for run in runs:
                key = (run.dag_id, run.run_id)
                tables = {
                    "dag_runs": tx.records("SELECT * FROM dag_runs WHERE id = ?", (run.pk,)),
                    "task_instances": tx.records(
                        "SELECT * FROM task_instances WHERE run_pk = ? ORDER BY ordinal, map_index",
                        (run.pk,),
                    ),
                }
                if not tables["dag_runs"]:
                    continue  # gone meanwhile
                for table in RUN_TABLES:
                    tables[table] = tx.records(
                        f"SELECT * FROM {table} WHERE dag_id = ? AND run_id = ?", key
                    )
                tables["notification_attempts"] = tx.records(
                    f"SELECT * FROM notification_attempts WHERE {ATTEMPTS}", key
                )
                found.append({"dag_id": run.dag_id, "run_id": run.run_id, "tables": tables})
            return found

        result: list[dict[str, Any]] = self.sql.read(read)
        return result

    def delete_runs(self, runs: Sequence[OldRun], before: datetime) -> Cleaned:
        if not runs:
            return Cleaned((), 0)

        def work(tx: Tx, pending: Pending) -> Cleaned:
            pks = [run.pk for run in runs]
            # Taking each run's row (PostgreSQL waits for a writer holding it, then checks the
            # condition again) settles a race with a retry: whichever commits first wins.
            kept = tx.rows(
                f"UPDATE dag_runs SET state = state WHERE id IN ({_marks(pks)}) AND {_OLD} "
                "RETURNING id, dag_id, run_id, logical_date, state, duration_ms",
                [*pks, *FINISHED, iso(before)],
            )
            if not kept:
                return Cleaned((), 0)
            roll_up(tx, [(int(pk), d, ld, s, ms) for pk, d, _, ld, s, ms in kept])
            pairs = [(dag_id, run_id) for _, dag_id, run_id, *_ in kept]
            pks = [int(row[0]) for row in kept]
            rows = tx.many(f"DELETE FROM notification_attempts WHERE {ATTEMPTS}", pairs)
            for table in RUN_TABLES:
                rows += tx.many(f"DELETE FROM {table} WHERE dag_id = ? AND run_id = ?", pairs)
            rows += tx.run(f"DELETE FROM task_instances WHERE run_pk IN ({_marks(pks)})", pks)
            rows += tx.run(f"DELETE FROM dag_runs WHERE id IN ({_marks(pks)})", pks)
            done = tuple(OldRun(int(pk), dag_id, run_id) for pk, dag_id, run_id, *_ in kept)
            gone = [
                ("run.deleted", {"dag_id": d, "run_id": r, "state": s, "reason": "retention"}, d, r,
                 None)
                for _, d, r, _, s, _ in kept
            ]  # fmt: skip
            self.sql.append(tx, pending, gone, self.sql.clock())
            return Cleaned(done, rows)

        cleaned: Cleaned = self.sql.write(work)
        return cleaned

    def trim(self, before: datetime, *, limit: int = 1000) -> int:
        cut = iso(before)

        def work(tx: Tx, _: Pending) -> int:
            oldest = tx.rows("SELECT seq, timestamp FROM events ORDER BY seq LIMIT ?", (limit,))
            young = (i for i, (_, stamp) in enumerate(oldest) if stamp >= cut)
            prefix = next(young, len(oldest))  # the old events before the first young one
            rows = 0
            if prefix:
                rows = tx.run("DELETE FROM events WHERE seq <= ?", (oldest[prefix - 1][0],))
            done = tx.rows(
                "SELECT id FROM notifications WHERE run_id IS NULL AND state <> 'pending' "
                "AND created_at < ? LIMIT ?",
                (cut, limit),
            )
            ids = [row[0] for row in done]
            if ids:
                marks = _marks(ids)
                rows += tx.run(
                    f"DELETE FROM notification_attempts WHERE notification_id IN ({marks})", ids
                )
                rows += tx.run(f"DELETE FROM notifications WHERE id IN ({marks})", ids)
            return rows

        trimmed: int = self.sql.write(work)
        return trimmed

    def reclaim(self, pages: int) -> int:
        return self.sql.database.reclaim(pages)

    def compact(self) -> int:
        return self.sql.database.compact()
