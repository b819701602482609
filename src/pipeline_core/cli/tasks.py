"""``pipeline-core tasks``: inspect task instances, in a local database or on a server."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from pipeline_core.cli.common import DEFAULT_DB, EXIT_FAILED, EXIT_OK
from pipeline_core.cli.remote import (
    EXIT_CLIENT,
    RemoteParser,
    client_of,
    remote,
    server_options,
    show,
)
from pipeline_core.errors import PipelineError
from pipeline_core.model import TaskKey
from pipeline_core.store import open_store


def add_commands(commands: Any) -> None:
    """``tasks logs``, ``tasks mark``, ``tasks clear``."""
    tasks = commands.add_parser("tasks", help="inspect and operate task instances").add_subparsers(
        title="tasks", parser_class=RemoteParser
    )
    mark = _on_server(tasks, "mark", _mark, "mark a task instance success, failed or skipped")
    mark.add_argument("state", choices=("success", "failed", "skipped"))
    mark.add_argument(
        "--map-index", type=int, default=-1, help="one instance of a mapped task (default: all)"
    )
    clear = _on_server(tasks, "clear", _clear, "run one instance of a mapped task again")
    clear.add_argument("--map-index", type=int, required=True, help="which instance (0, 1, ...)")
    clear.add_argument("--no-downstream", action="store_true", help="not its task's downstream")
    logs = tasks.add_parser(
        "logs",
        help="print a task's log",
        description="From the database (--db) or a server (--server); --follow needs a server.",
    )
    logs.add_argument("dag_id")
    logs.add_argument("run_id")
    logs.add_argument("task_id")
    logs.add_argument("--try", dest="try_number", type=int, help="which try (default: the latest)")
    logs.add_argument(
        "--map-index", type=int, default=-1, help="which instance of a mapped task (0, 1, ...)"
    )
    logs.add_argument(
        "--follow", action="store_true", help="print the log as it is written, until the try ends"
    )
    logs.add_argument(
        "--db", help=f"database URL (env PIPELINE_CORE_DB; default {DEFAULT_DB} without --server)"
    )
    server_options(logs)
    logs.set_defaults(handler=tasks_logs)


def _on_server(tasks: Any, name: str, handler: Any, help_text: str) -> Any:
    parser = tasks.add_parser(name, help=help_text)
    for argument in ("dag_id", "run_id", "task_id"):
        parser.add_argument(argument)
    server_options(parser)
    parser.set_defaults(handler=remote(handler))
    return parser


def _mark(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        ids = (args.dag_id, args.run_id, args.task_id)
        ti = client.tasks.mark(*ids, args.state, map_index=args.map_index)
    show(args, out, ti, lambda t: f"{_named(t)} is {t['state']}")
    return EXIT_OK


def _clear(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        ids = (args.dag_id, args.run_id, args.task_id)
        answer = client.tasks.clear(*ids, args.map_index, include_downstream=not args.no_downstream)
    show(
        args,
        out,
        answer,
        lambda a: f"cleared: {', '.join(a['task_ids'])} (run {a['run']['state']})",
    )
    return EXIT_OK


def _named(ti: dict[str, Any]) -> str:
    index = ti.get("map_index", -1)
    return f"{ti['task_id']}[{index}]" if index >= 0 else str(ti["task_id"])


def tasks_logs(args: argparse.Namespace, out: TextIO) -> int:
    """Print one try's log (the latest try unless ``--try`` is given)."""
    if args.server and args.db:
        sys.stderr.write("error: give --server or --db, not both\n")
        return EXIT_CLIENT
    if args.server or args.follow or (os.environ.get("PIPELINE_CORE_SERVER") and not args.db):
        result: int = remote(_remote_logs)(args, out)
        return result
    store = open_store(args.db or os.environ.get("PIPELINE_CORE_DB", DEFAULT_DB))
    try:
        key = TaskKey(args.dag_id, args.run_id, args.task_id, args.map_index)
        try_number = args.try_number or store.tasks.get_task_instance(key).try_number
        out.write(store.task_data.read_log(key, try_number).text)
        return EXIT_OK
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    finally:
        store.close()


def _remote_logs(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        ids = (args.dag_id, args.run_id, args.task_id)
        if args.follow:
            pieces = client.tasks.follow_log(
                *ids, try_number=args.try_number, map_index=args.map_index
            )
            for piece in pieces:
                out.write(piece)
                out.flush()
            return EXIT_OK
        offset = 0
        while True:  # a log is read a page at a time
            chunk = client.tasks.log(
                *ids, try_number=args.try_number, offset=offset, map_index=args.map_index
            )
            out.write(chunk["text"])
            if chunk["next_offset"] >= chunk["size"] or not chunk["text"]:
                return EXIT_OK
            offset = chunk["next_offset"]
