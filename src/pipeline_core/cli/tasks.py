"""``pipeline-core tasks``: inspect task instances, in a local database or on a server."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

from pipeline_core.cli.common import DEFAULT_DB, EXIT_FAILED, EXIT_OK
from pipeline_core.cli.remote import EXIT_CLIENT, client_of, remote, server_options
from pipeline_core.errors import PipelineError
from pipeline_core.model import TaskKey
from pipeline_core.store import open_store


def add_commands(commands: Any) -> None:
    """``tasks logs``."""
    tasks = commands.add_parser("tasks", help="inspect task instances").add_subparsers(
        title="tasks"
    )
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
