"""``pipeline-core tokens|audit``: named API tokens, made, listed and revoked on the database
(the first token has no server to ask for it), and the audit trail read from a server with an
admin token."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TextIO

from pipeline_core.cli.common import EXIT_OK, EXIT_USAGE, db_option, on_store
from pipeline_core.cli.remote import RemoteParser, client_of, remote, server_options, show, table
from pipeline_core.credentials.accounts import ROLES
from pipeline_core.dag.model import parse_duration
from pipeline_core.model import iso, utcnow
from pipeline_core.store.base import Store


def add_commands(commands: Any) -> None:
    tokens = commands.add_parser("tokens", help="named API tokens with a role")
    sub = tokens.add_subparsers(title="tokens")
    create = _on_db(sub, "create", _create, "make a token and print it (shown once)")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--expires", help="valid for this long: 30d, 12h, 3600 (default: ever)")
    create.add_argument("--dags-tag", help="see and act on the DAGs with this tag only")
    _on_db(sub, "list", _list, "every token: role, scope, expiry, revocation")
    revoke = _on_db(sub, "revoke", _revoke, "refuse a token from now on (its streams end)")
    revoke.add_argument("name")

    audit = commands.add_parser("audit", help="the audit trail of a server")
    sub = audit.add_subparsers(title="audit", parser_class=RemoteParser)
    listing = sub.add_parser("list", help="requests that changed something, newest first")
    server_options(listing)
    listing.add_argument("--actor", help="one token's requests")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=remote(_audit))


def _on_db(sub: Any, name: str, handler: Callable[..., int], help_text: str) -> Any:
    parser = sub.add_parser(name, help=help_text)
    db_option(parser)
    parser.set_defaults(handler=on_store(handler))
    return parser


def _create(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    expires = None
    if args.expires:
        try:
            expires = utcnow() + timedelta(seconds=parse_duration(args.expires))
        except (ValueError, OverflowError) as exc:
            sys.stderr.write(f"error: --expires: {exc}\n")
            return EXIT_USAGE
    token, plain = store.accounts.create_token(
        args.name, args.role, dags_tag=args.dags_tag, expires_at=expires
    )
    until = f", expires {iso(token.expires_at)}" if token.expires_at else ""
    scope = f", DAGs tagged '{token.dags_tag}'" if token.dags_tag else ""
    sys.stderr.write(f"token '{token.name}' ({token.role}{scope}{until}); it is shown once:\n")
    out.write(plain + "\n")
    return EXIT_OK


def _list(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    rows = [
        {"name": t.name, "role": t.role, "dags_tag": t.dags_tag or "",
         "expires_at": iso(t.expires_at) or "", "revoked_at": iso(t.revoked_at) or ""}
        for t in store.accounts.list_tokens()
    ]  # fmt: skip
    out.write(table(rows, ["name", "role", "dags_tag", "expires_at", "revoked_at"]) + "\n")
    return EXIT_OK


def _revoke(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    token = store.accounts.revoke_token(args.name)
    out.write(f"token '{token.name}' revoked at {iso(token.revoked_at)}\n")
    return EXIT_OK


def _audit(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.audit.list(actor=args.actor, limit=args.limit)
    columns = ["at", "actor", "action", "target", "status", "source"]
    show(args, out, found, lambda _: table(found, columns))
    return EXIT_OK
