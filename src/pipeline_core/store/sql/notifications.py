"""The notification outbox in SQL: reading it, holding due notifications for a deliverer,
recording attempts, redelivery. (The outbox is written by ``outbox.OutboxWriter``, inside
the transactions of the events that cause it.)"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import iso
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.rows import equal_filters, paged
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import (
    NOTIFICATION_STATES,
    AttemptOutcome,
    DeliveryAttempt,
    Notification,
    NotificationQuery,
    Page,
)

COLUMNS = (
    "id, seq, event, dag_id, run_id, task_id, try_number, rule, target_kind, target, payload, "
    "state, attempts, last_error, last_status, created_at, due_ms, delivered_at"
)
#: A recorded error is cut to this many characters.
MAX_ERROR = 2000


class NotificationsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def list_notifications(self, query: NotificationQuery) -> Page[Notification]:
        where, params = equal_filters(query, ("dag_id", "run_id", "state"))
        source, window = f"{COLUMNS} FROM notifications", (query.limit, query.offset)
        page: Page[Notification] = self.sql.read(
            lambda tx: paged(tx, source, where, params, "seq DESC, id DESC", window, _from_row)
        )
        return page

    def get_notification(self, notification_id: str) -> Notification:
        def work(tx: Tx) -> Notification:
            row = tx.one(f"SELECT {COLUMNS} FROM notifications WHERE id = ?", (notification_id,))
            if row is None:
                raise NotFound(f"no notification '{notification_id}'")
            attempts = tx.rows(
                "SELECT number, at, status, error, duration_ms FROM notification_attempts "
                "WHERE notification_id = ? ORDER BY number",
                (notification_id,),
            )
            history = tuple(
                DeliveryAttempt(int(a[0]), parse_ts(a[1]), a[2], a[3], int(a[4])) for a in attempts
            )
            return _from_row(row, history)

        found: Notification = self.sql.read(work)
        return found

    def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[Notification]:
        def work(tx: Tx, _: Pending) -> list[Notification]:
            rows = tx.rows(
                f"SELECT {COLUMNS} FROM notifications WHERE state = 'pending' AND due_ms <= ? "
                "AND lease_ms <= ? ORDER BY due_ms, seq LIMIT ?",
                (now_ms, now_ms, limit),
            )
            held = []
            for row in rows:
                if tx.run(
                    "UPDATE notifications SET lease_ms = ? WHERE id = ? AND state = 'pending' "
                    "AND lease_ms <= ?",
                    (now_ms + lease_ms, row[0], now_ms),
                ):
                    held.append(_from_row(row))
            return held

        claimed: list[Notification] = self.sql.write(work)
        return claimed

    def next_due_ms(self) -> int | None:
        due = self.sql.read(
            lambda tx: tx.scalar(
                "SELECT MIN(CASE WHEN lease_ms > due_ms THEN lease_ms ELSE due_ms END) "
                "FROM notifications WHERE state = 'pending'"
            )
        )
        return None if due is None else int(due)

    def record_attempts(self, outcomes: Sequence[tuple[str, AttemptOutcome]]) -> list[Notification]:
        def work(tx: Tx, pending: Pending) -> list[Notification]:
            now = self.sql.clock()
            return [self._record(tx, pending, now, i, outcome) for i, outcome in outcomes]

        recorded: list[Notification] = self.sql.write(work)
        return recorded

    def _record(
        self, tx: Tx, pending: Pending, now: datetime, notification_id: str, outcome: AttemptOutcome
    ) -> Notification:
        error = None if outcome.error is None else outcome.error[:MAX_ERROR]
        row = tx.one("SELECT attempts FROM notifications WHERE id = ?", (notification_id,))
        if row is None:
            raise NotFound(f"no notification '{notification_id}'")
        number = int(row[0]) + 1
        tx.run(
            "INSERT INTO notification_attempts (notification_id, number, at, status, error, "
            "duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (notification_id, number, iso(now), outcome.status, error, outcome.duration_ms),
        )
        tx.run(
            "UPDATE notifications SET state = ?, attempts = ?, last_error = ?, "
            "last_status = ?, due_ms = ?, lease_ms = 0, delivered_at = ? WHERE id = ?",
            (outcome.state, number, error, outcome.status,
             outcome.due_ms if outcome.state == "pending" else 0,
             iso(now) if outcome.state == "delivered" else None, notification_id),
        )  # fmt: skip
        stored = _from_row(
            tx.one(f"SELECT {COLUMNS} FROM notifications WHERE id = ?", (notification_id,))
        )
        if outcome.state != "pending":
            self._announce(tx, pending, stored, f"notification.{outcome.state}")
        return stored

    def redeliver(self, notification_id: str) -> Notification:
        def work(tx: Tx, pending: Pending) -> Notification:
            now = self.sql.clock()
            state = tx.scalar("SELECT state FROM notifications WHERE id = ?", (notification_id,))
            if state is None:
                raise NotFound(f"no notification '{notification_id}'")
            if state == "pending":
                raise Conflict(f"notification '{notification_id}' is still being delivered")
            tx.run(
                "UPDATE notifications SET state = 'pending', due_ms = ?, lease_ms = 0, "
                "delivered_at = NULL WHERE id = ?",
                (int(now.timestamp() * 1000), notification_id),
            )
            stored = _from_row(
                tx.one(f"SELECT {COLUMNS} FROM notifications WHERE id = ?", (notification_id,))
            )
            self._announce(tx, pending, stored, "notification.redelivery")
            return stored

        again: Notification = self.sql.write(work)
        return again

    def notification_counts(self) -> dict[str, int]:
        rows = self.sql.read(
            lambda tx: tx.rows("SELECT state, COUNT(*) FROM notifications GROUP BY state")
        )
        counts = dict.fromkeys(NOTIFICATION_STATES, 0)
        counts.update({r[0]: int(r[1]) for r in rows})
        return counts

    def _announce(self, tx: Tx, pending: Pending, stored: Notification, kind: str) -> None:
        payload: dict[str, Any] = {
            "id": stored.id,
            "event": stored.event,
            "target_kind": stored.target_kind,
            "state": stored.state,
            "attempts": stored.attempts,
            "last_status": stored.last_status,
            "last_error": stored.last_error,
        }
        ids = (stored.dag_id, stored.run_id, stored.task_id)
        self.sql.append(tx, pending, [(kind, payload, *ids)], self.sql.clock())


def _from_row(row: Any, history: tuple[DeliveryAttempt, ...] = ()) -> Notification:
    return Notification(
        id=row[0], seq=int(row[1]), event=row[2], dag_id=row[3], run_id=row[4], task_id=row[5],
        try_number=row[6], rule=row[7], target_kind=row[8], target=json.loads(row[9]),
        payload=json.loads(row[10]), state=row[11], attempts=int(row[12]), last_error=row[13],
        last_status=row[14], created_at=parse_ts(row[15]), due_ms=int(row[16]),
        delivered_at=parse_ts(row[17]), history=history,
    )  # fmt: skip
