"""Backfills in SQL: the backfill, its logical dates, and the run made for each date."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import iso
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import Backfill, BackfillDate

_COLUMNS = (
    "id, dag_id, from_date, to_date, reprocess, max_active_runs, state, created_at, completed_at"
)


class BackfillsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def create_backfill(
        self,
        dag_id: str,
        from_date: datetime,
        to_date: datetime,
        *,
        reprocess: str,
        max_active_runs: int,
        dates: Sequence[datetime],
    ) -> Backfill:
        def work(tx: Tx, pending: Pending) -> Backfill:
            now = self.sql.clock()
            backfill_id = int(
                tx.scalar(
                    "INSERT INTO backfills (dag_id, from_date, to_date, reprocess, "
                    "max_active_runs, state, created_at) VALUES (?, ?, ?, ?, ?, 'running', ?) "
                    "RETURNING id",
                    (dag_id, iso(from_date), iso(to_date), reprocess, max_active_runs, iso(now)),
                )
            )
            tx.many(
                "INSERT INTO backfill_dates (backfill_id, ordinal, logical_date) VALUES (?, ?, ?)",
                [(backfill_id, i, iso(d)) for i, d in enumerate(dates)],
            )
            backfill = _read(tx, backfill_id)
            self.sql.append(tx, pending, [_event(backfill, "created")], now)
            return backfill

        result: Backfill = self.sql.write(work)
        return result

    def get_backfill(self, backfill_id: int) -> Backfill:
        result: Backfill = self.sql.read(lambda tx: _read(tx, backfill_id))
        return result

    def list_backfills(self, dag_id: str | None = None, state: str | None = None) -> list[Backfill]:
        where, params = [], []
        if dag_id is not None:
            where.append("dag_id = ?")
            params.append(dag_id)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        clause = f" WHERE {' AND '.join(where)}" if where else ""

        def work(tx: Tx) -> list[Backfill]:
            ids = tx.rows(f"SELECT id FROM backfills{clause} ORDER BY id", params)
            return [_read(tx, int(row[0])) for row in ids]

        result: list[Backfill] = self.sql.read(work)
        return result

    def set_backfill_run(self, backfill_id: int, logical_date: datetime, run_id: str) -> None:
        def work(tx: Tx, pending: Pending) -> None:
            changed = tx.run(
                "UPDATE backfill_dates SET run_id = ? WHERE backfill_id = ? "
                "AND logical_date = ? AND run_id IS NULL",
                (run_id, backfill_id, iso(logical_date)),
            )
            if changed != 1:
                raise Conflict(f"backfill {backfill_id} has no date {iso(logical_date)} waiting")

        self.sql.write(work)

    def end_backfill(self, backfill_id: int, state: str) -> Backfill:
        def work(tx: Tx, pending: Pending) -> Backfill:
            current = _read(tx, backfill_id)
            if current.state != "running":
                raise Conflict(f"backfill {backfill_id} is {current.state} already")
            now = self.sql.clock()
            tx.run(
                "UPDATE backfills SET state = ?, completed_at = ? WHERE id = ? AND state = ?",
                (state, iso(now), backfill_id, "running"),
            )
            ended = _read(tx, backfill_id)
            self.sql.append(tx, pending, [_event(ended, state)], now)
            return ended

        result: Backfill = self.sql.write(work)
        return result


def _read(tx: Tx, backfill_id: int) -> Backfill:
    row = tx.one(f"SELECT {_COLUMNS} FROM backfills WHERE id = ?", (backfill_id,))
    if row is None:
        raise NotFound(f"no backfill {backfill_id}")
    dates = tx.rows(
        "SELECT b.logical_date, b.run_id, r.state FROM backfill_dates b LEFT JOIN dag_runs r "
        "ON r.dag_id = ? AND r.run_id = b.run_id WHERE b.backfill_id = ? ORDER BY b.ordinal",
        (row[1], backfill_id),
    )
    return Backfill(
        int(row[0]), row[1], parse_ts(row[2]), parse_ts(row[3]), row[4], int(row[5]), row[6],
        parse_ts(row[7]), parse_ts(row[8]),
        tuple(BackfillDate(parse_ts(d), run_id, state) for d, run_id, state in dates),
    )  # fmt: skip


def _event(backfill: Backfill, change: str) -> tuple[str, dict[str, Any], str, None, None]:
    payload = {"backfill_id": backfill.id, "change": change, "state": backfill.state}
    return ("backfill.updated", payload, backfill.dag_id, None, None)
