"""``/notifications``: the outbox — what was notified, to whom, how delivery went — and
redelivery of one notification under the same delivery id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline_core.api.http import Request, Response, envelope, listing
from pipeline_core.api.openapi.operation import PAGE, Operation, Param
from pipeline_core.api.openapi.parts import ID, RUN_ID, envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.params import page
from pipeline_core.model import iso
from pipeline_core.store.base import Store
from pipeline_core.store.types import NOTIFICATION_STATES, Notification, NotificationQuery

NOTIFICATION_ID = {"type": "string", "pattern": "^ntf-[0-9]{1,19}-[0-9]{1,6}$"}
#: What an answer shows of a target: never a header, a secret or a resolved reference.
SHOWN = ("url", "to", "ref")

LIST = Operation(
    "list_notifications",
    "notifications",
    "List notifications",
    "The outbox, newest first: each notification's event, rule, target, state, attempts "
    "and last error. Secrets show as the `${env:NAME}` references the DAG wrote.",
    envelope_of(ref("Notification"), listing=True),
    (
        *PAGE,
        Param("dag_id", schema=ID),
        Param("run_id", schema=RUN_ID),
        Param("state", schema={"enum": list(NOTIFICATION_STATES)}),
    ),
    read=True,
)
GET = Operation(
    "get_notification",
    "notifications",
    "Get a notification",
    "One notification with the payload it sends and every delivery attempt.",
    envelope_of(ref("Notification")),
    (Param("notification_id", "path", NOTIFICATION_ID),),
    read=True,
)
REDELIVER = Operation(
    "redeliver_notification",
    "notifications",
    "Deliver a notification again",
    "Make a delivered or failed notification pending again, due now; it keeps its delivery "
    "id, so a receiver that drops repeated ids sees it once (409 while it is pending).",
    envelope_of(ref("Notification")),
    (Param("notification_id", "path", NOTIFICATION_ID),),
)


def notification_dict(n: Notification, *, full: bool = False) -> dict[str, Any]:
    target = {"kind": n.target_kind, **{k: n.target[k] for k in SHOWN if k in n.target}}
    due = datetime.fromtimestamp(n.due_ms / 1000, UTC) if n.state == "pending" else None
    data: dict[str, Any] = {
        "id": n.id,
        "seq": n.seq,
        "event": n.event,
        "dag_id": n.dag_id,
        "run_id": n.run_id,
        "task_id": n.task_id,
        "try_number": n.try_number,
        "rule": n.rule,
        "target": target,
        "state": n.state,
        "attempts": n.attempts,
        "last_error": n.last_error,
        "last_status": n.last_status,
        "created_at": iso(n.created_at),
        "next_attempt_at": iso(due),
        "delivered_at": iso(n.delivered_at),
    }
    if full:
        data["payload"] = dict(n.payload)
        data["history"] = [
            {"number": a.number, "at": iso(a.at), "status": a.status, "error": a.error,
             "duration_ms": a.duration_ms}
            for a in n.history
        ]  # fmt: skip
    return data


def list_notifications(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        limit, offset = page(request)
        args = request.args
        query = NotificationQuery(
            args.get("dag_id"), args.get("run_id"), args.get("state"), limit, offset
        )
        found = store.notifications.list_notifications(query)
        return listing([notification_dict(n) for n in found.items], found.total, limit, offset)

    return handle


def get_notification(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        found = store.notifications.get_notification(request.params["notification_id"])
        return envelope(notification_dict(found, full=True))

    return handle


def redeliver(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        again = store.notifications.redeliver(request.params["notification_id"])
        return envelope(notification_dict(again, full=True))

    return handle
