"""The outbox's writer: inside the transaction that appends events, the notifications those
events cause, so a notification exists exactly when its event does — a crash can lose
neither one without the other, and no event is ever notified twice.

Rules come from the DAG's stored definition, kept per DAG and checked against the stored
definition hash inside the transaction (one indexed read per event that a rule could hear),
so a DAG re-synced by another process is seen at once.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pipeline_core.events import Event
from pipeline_core.model import iso
from pipeline_core.store.notices import DagRules, delivery_id, kind_of, payload_of
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.sql.tx import Tx

#: How long (monotonic seconds) what is known of a DAG's rules counts as current where no
#: transaction can check it (``may_skip``: PostgreSQL's one-call writes).
TRUSTED_FOR = 5.0


class OutboxWriter:
    def __init__(self) -> None:
        self._known: dict[str, tuple[str | None, float, DagRules]] = {}
        self._lock = threading.Lock()

    def record(self, tx: Tx, events: Sequence[Event], now: datetime) -> None:
        """Write the notifications ``events`` cause (called inside their transaction). A
        DAG's rules and a run's fields are read once per call, the rows written together."""
        rules_of: dict[str, DagRules] = {}
        heard: list[tuple[Event, str, list[tuple[str, Any]]]] = []
        for event in events:
            if event.type == "dag.updated" and event.dag_id is not None:
                with self._lock:
                    self._known.pop(event.dag_id, None)
                rules_of.pop(event.dag_id, None)
                continue
            kind = kind_of(event)
            if kind is None or event.dag_id is None:
                continue
            if event.dag_id not in rules_of:
                rules_of[event.dag_id] = self._rules(tx, dag_id=event.dag_id)
            rules = rules_of[event.dag_id]
            matched = list(rules.matching(kind, event.task_id)) if rules else []
            if matched:
                heard.append((event, kind, matched))
        if not heard:
            return
        runs = {(e.dag_id, e.run_id): _run_fields(tx, e.dag_id, e.run_id) for e, _, _ in heard}
        tasks = _task_fields(tx, [e for e, _, _ in heard if e.task_id is not None])
        rows: list[tuple[Any, ...]] = []
        for event, kind, matched in heard:
            task = tasks.get((event.dag_id, event.run_id, event.task_id))
            failed = _failed_tasks(tx, event) if kind == "run_failed" else ()
            payload = payload_of(kind, event, runs[event.dag_id, event.run_id], task, failed)
            rows.extend(_rows(event, kind, matched, payload, now))
        if rows:
            tx.many(
                "INSERT INTO notifications (id, seq, event, dag_id, run_id, task_id, "
                "try_number, rule, target_kind, target, payload, state, attempts, created_at, "
                "due_ms, lease_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, 0)",
                rows,
            )

    def may_skip(self, dag_ids: Sequence[str], read: Callable[[Callable[[Tx], Any]], Any]) -> bool:
        """Whether none of ``dag_ids`` has a rule: writes that could cause notifications may
        then take a path that does not pass through ``record``. What is known of a DAG is
        read again (``read`` runs a read transaction) once it is ``TRUSTED_FOR`` old."""
        horizon = time.monotonic() - TRUSTED_FOR
        for dag_id in dag_ids:
            with self._lock:
                known = self._known.get(dag_id)
            if known is None or known[1] < horizon:
                rules: DagRules = read(functools.partial(self._rules, dag_id=dag_id))
            else:
                rules = known[2]
            if rules:
                return False
        return True

    def _rules(self, tx: Tx, *, dag_id: str) -> DagRules:
        row = tx.one("SELECT definition_hash FROM dags WHERE dag_id = ?", (dag_id,))
        digest = row[0] if row else None
        with self._lock:
            known = self._known.get(dag_id)
        if known is not None and known[0] == digest:
            with self._lock:
                self._known[dag_id] = (digest, time.monotonic(), known[2])
            return known[2]
        text = tx.scalar("SELECT definition FROM dags WHERE dag_id = ?", (dag_id,))
        rules = DagRules.of(json.loads(text) if text else None)
        with self._lock:
            self._known[dag_id] = (digest, time.monotonic(), rules)
        return rules


def _rows(
    event: Event,
    kind: str,
    matched: list[tuple[str, Any]],
    payload: dict[str, Any],
    now: datetime,
) -> list[tuple[Any, ...]]:
    """The outbox rows of one event, one per rule it matched."""
    due = int(now.timestamp() * 1000)
    rows = []
    for index, (label, rule) in enumerate(matched):
        notification_id = delivery_id(event.seq, index)
        body = to_json({**payload, "delivery_id": notification_id}, "notification")
        rows.append(
            (notification_id, event.seq, kind, event.dag_id, event.run_id, event.task_id,
             payload.get("try_number"), label, rule.target, to_json(dict(rule.settings),
             "target"), body, iso(now), due)
        )  # fmt: skip
    return rows


def _run_fields(tx: Tx, dag_id: str | None, run_id: str | None) -> dict[str, Any] | None:
    row = tx.one(
        "SELECT logical_date, start_date, end_date FROM dag_runs WHERE dag_id = ? AND run_id = ?",
        (dag_id, run_id),
    )
    return (
        None
        if row is None
        else dict(zip(("logical_date", "start_date", "end_date"), row, strict=True))
    )


def _task_fields(tx: Tx, events: list[Event]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The start and end of the task instances ``events`` are about, in one read per run."""
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    by_run: dict[tuple[str | None, str | None], set[str]] = {}
    for event in events:
        by_run.setdefault((event.dag_id, event.run_id), set()).add(str(event.task_id))
    for (dag_id, run_id), task_ids in by_run.items():
        marks = ", ".join("?" * len(task_ids))
        for row in tx.rows(
            "SELECT task_id, start_date, end_date FROM task_instances "
            f"WHERE dag_id = ? AND run_id = ? AND task_id IN ({marks})",
            (dag_id, run_id, *task_ids),
        ):
            found[dag_id, run_id, row[0]] = {"start_date": row[1], "end_date": row[2]}
    return found


def _failed_tasks(tx: Tx, event: Event) -> list[tuple[str, str | None]]:
    rows = tx.rows(
        "SELECT task_id, error FROM task_instances WHERE dag_id = ? AND run_id = ? "
        "AND state = 'failed' ORDER BY end_date LIMIT 5",
        (event.dag_id, event.run_id),
    )
    return [(r[0], r[1]) for r in rows]
