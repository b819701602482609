"""``pipeline-core notifications list|redeliver``: the notification outbox on a server."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from pipeline_core.cli.remote import (
    EXIT_OK,
    RemoteParser,
    client_of,
    remote,
    server_options,
    show,
    table,
)

COLUMNS = ["id", "event", "dag_id", "run_id", "task_id", "target", "state", "attempts",
           "last_error"]  # fmt: skip


def add_commands(commands: Any) -> None:
    group = commands.add_parser("notifications", help="the notification outbox on a server")
    sub = group.add_subparsers(title="notifications", parser_class=RemoteParser)
    listing = sub.add_parser("list", help="notifications, newest first, with how delivery went")
    listing.add_argument("--dag-id")
    listing.add_argument("--run-id")
    listing.add_argument("--state", choices=("pending", "delivered", "failed"))
    listing.add_argument("--limit", type=int, default=100)
    server_options(listing)
    listing.set_defaults(handler=remote(_list))
    again = sub.add_parser("redeliver", help="deliver a notification again, with the same id")
    again.add_argument("notification_id")
    server_options(again)
    again.set_defaults(handler=remote(_redeliver))


def _rows(items: list[dict[str, Any]]) -> str:
    rows = [{**n, "target": n["target"]["kind"]} for n in items]
    return table(rows, COLUMNS)


def _list(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.notifications.list(
            dag_id=args.dag_id, run_id=args.run_id, state=args.state, limit=args.limit
        )
        show(args, out, found, _rows)
    return EXIT_OK


def _redeliver(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        again = client.notifications.redeliver(args.notification_id)
        show(args, out, again, lambda n: f"{n['id']} is pending again ({n['event']}, "
             f"{n['target']['kind']})")  # fmt: skip
    return EXIT_OK
