"""``pipeline-core variables|connections|secrets``: shared settings on a server, and the key
that seals secrets at rest (``secrets new-key`` prints one; ``secrets rotate-key`` seals
every stored secret again under the first key of ``PIPELINE_CORE_SECRET_KEY``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from pipeline_core.cli.common import EXIT_OK, db_option, on_store
from pipeline_core.cli.remote import (
    RemoteParser,
    UsageError,
    client_of,
    remote,
    server_options,
    show,
    table,
)
from pipeline_core.credentials.cipher import Cipher
from pipeline_core.store import Store


def add_commands(commands: Any) -> None:
    variables = commands.add_parser("variables", help="shared settings on a server")
    sub = variables.add_subparsers(title="variables", parser_class=RemoteParser)
    _on_server(sub, "list", _list_variables, "variables (secret values shown as ***)")
    get = _on_server(sub, "get", _get_variable, "one variable")
    get.add_argument("key")
    put = _on_server(sub, "set", _set_variable, "create or replace a variable")
    put.add_argument("key")
    put.add_argument("value", help="JSON (a bare word is taken as a string)")
    put.add_argument("--secret", action="store_true", help="seal it and mask it everywhere")
    put.add_argument("--description")
    delete = _on_server(sub, "delete", _delete_variable, "delete a variable")
    delete.add_argument("key")
    load = _on_server(sub, "import", _import_variables, "set every variable of a JSON file")
    load.add_argument("file", help='{"key": value, ...}')

    connections = commands.add_parser("connections", help="connections on a server")
    sub = connections.add_subparsers(title="connections", parser_class=RemoteParser)
    _on_server(sub, "list", _list_connections, "connections (passwords shown as ***)")
    get = _on_server(sub, "get", _get_connection, "one connection")
    get.add_argument("conn_id")
    put = _on_server(sub, "set", _set_connection, "create or replace a connection from a URI")
    put.add_argument("conn_id")
    put.add_argument("uri", help="postgresql://login:password@host:5432/schema?extra=value")
    delete = _on_server(sub, "delete", _delete_connection, "delete a connection")
    delete.add_argument("conn_id")

    secrets = commands.add_parser("secrets", help="the key that seals secrets at rest")
    sub = secrets.add_subparsers(title="secrets")
    sub.add_parser("new-key", help="print a new key").set_defaults(handler=_new_key)
    rotate = sub.add_parser(
        "rotate-key",
        help="seal every stored secret under the first key of PIPELINE_CORE_SECRET_KEY "
        "(new,old: the old one opens them)",
    )
    db_option(rotate)
    rotate.set_defaults(handler=on_store(_rotate))


def _on_server(sub: Any, name: str, handler: Any, help_text: str) -> Any:
    parser = sub.add_parser(name, help=help_text)
    server_options(parser)
    parser.set_defaults(handler=remote(handler))
    return parser


def _list_variables(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.variables.list()
    rows = [{**v, "value": json.dumps(v["value"])} for v in found]
    show(args, out, found, lambda _: table(rows, ["key", "value", "is_secret", "version"]))
    return EXIT_OK


def _get_variable(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.variables.get(args.key)
    show(args, out, found, lambda v: json.dumps(v["value"]))
    return EXIT_OK


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _set_variable(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        made = client.variables.set(
            args.key, _value(args.value), secret=args.secret or None, description=args.description
        )
    show(args, out, made, lambda v: f"{v['key']} set (version {v['version']})")
    return EXIT_OK


def _deleter(resource: str, param: str) -> Callable[[argparse.Namespace, TextIO], int]:
    """Delete one of ``client.<resource>``, named by argument ``param``."""

    def delete(args: argparse.Namespace, out: TextIO) -> int:
        name = getattr(args, param)
        with client_of(args) as client:
            getattr(client, resource).delete(name)
        out.write(f"{name} deleted\n")
        return EXIT_OK

    return delete


_delete_variable = _deleter("variables", "key")
_delete_connection = _deleter("connections", "conn_id")


def _import_variables(args: argparse.Namespace, out: TextIO) -> int:
    try:
        with open(args.file, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {args.file}: {exc}") from None
    if not isinstance(values, dict):
        raise UsageError(f"{args.file} must hold a JSON object of keys to values")
    with client_of(args) as client:
        for key, value in values.items():
            client.variables.set(key, value)
    out.write(f"{len(values)} variable(s) set\n")
    return EXIT_OK


def _list_connections(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.connections.list()
    show(args, out, found, lambda _: table(found, ["conn_id", "conn_type", "host", "port",
                                                  "login", "schema", "version"]))  # fmt: skip
    return EXIT_OK


def _get_connection(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        found = client.connections.get(args.conn_id)
    show(args, out, found, lambda c: json.dumps(c, indent=2))
    return EXIT_OK


def _set_connection(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        made = client.connections.set(args.conn_id, uri=args.uri)
    show(args, out, made, lambda c: f"{c['conn_id']} set (version {c['version']})")
    return EXIT_OK


def _new_key(args: argparse.Namespace, out: TextIO) -> int:
    out.write(Cipher.new_key() + "\n")
    return EXIT_OK


def _rotate(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    count = store.credentials.rotate_key()
    out.write(f"{count} secret(s) sealed again under the first key\n")
    return EXIT_OK
