"""``pipeline-core assets list|events|post``: assets and their updates on a server."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from pipeline_core.cli.remote import (
    EXIT_OK,
    RemoteParser,
    UsageError,
    client_of,
    remote,
    server_options,
    show,
    table,
)


def add_commands(commands: Any) -> None:
    group = commands.add_parser("assets", help="assets and their updates on a server")
    sub = group.add_subparsers(title="assets", parser_class=RemoteParser)
    listing = sub.add_parser("list", help="assets with their producers, consumers, last update")
    server_options(listing)
    listing.set_defaults(handler=remote(_list))
    events = sub.add_parser("events", help="updates, newest first")
    events.add_argument("--uri", help="of one asset")
    events.add_argument("--limit", type=int, default=100)
    server_options(events)
    events.set_defaults(handler=remote(_events))
    post = sub.add_parser("post", help="record an update of an asset (it starts its consumers)")
    post.add_argument("uri")
    post.add_argument("--extra", help="a JSON object kept with the update")
    post.add_argument("--idempotency-key", help="a repeat with the same key records nothing")
    server_options(post)
    post.set_defaults(handler=remote(_post))


def _list(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.assets.list()
    rows = [{**a, "producers": ", ".join(a["producers"]), "consumers": ", ".join(a["consumers"])}
            for a in found]  # fmt: skip
    show(args, out, found, lambda _: table(rows, ["uri", "updates", "last_update", "producers",
                                                  "consumers"]))  # fmt: skip
    return EXIT_OK


def _events(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.assets.events(args.uri, limit=args.limit)
    rows = [{**u, "source": _source(u["source"]), "extra": json.dumps(u["extra"])} for u in found]
    show(args, out, found, lambda _: table(rows, ["id", "uri", "timestamp", "source", "extra"]))
    return EXIT_OK


def _post(args: argparse.Namespace, out: TextIO) -> int:
    extra = None
    if args.extra is not None:
        try:
            extra = json.loads(args.extra)
        except ValueError as exc:
            raise UsageError(f"--extra is not JSON: {exc}") from None
        if not isinstance(extra, dict):
            raise UsageError("--extra must be a JSON object")
    with client_of(args) as client:
        update = client.assets.post(args.uri, extra, idempotency_key=args.idempotency_key)
    show(args, out, update, lambda u: f"update {u['id']} of {u['uri']} recorded")
    return EXIT_OK


def _source(source: dict[str, Any] | None) -> str:
    return "-" if source is None else f"{source['dag_id']}.{source['task_id']} ({source['run_id']})"
