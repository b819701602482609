"""``pipeline-core tasks``: inspect task instances."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from pipeline_core.cli.common import EXIT_FAILED, EXIT_OK, db_option
from pipeline_core.errors import PipelineError
from pipeline_core.model import TaskKey
from pipeline_core.store import open_store


def add_commands(commands: Any) -> None:
    """``tasks logs``."""
    tasks = commands.add_parser("tasks", help="inspect task instances").add_subparsers(
        title="tasks"
    )
    logs = tasks.add_parser("logs", help="print a task's log")
    logs.add_argument("dag_id")
    logs.add_argument("run_id")
    logs.add_argument("task_id")
    logs.add_argument("--try", dest="try_number", type=int, help="which try (default: the latest)")
    db_option(logs)
    logs.set_defaults(handler=tasks_logs)


def tasks_logs(args: argparse.Namespace, out: TextIO) -> int:
    """Print one try's log (the latest try unless ``--try`` is given)."""
    store = open_store(args.db)
    try:
        key = TaskKey(args.dag_id, args.run_id, args.task_id)
        try_number = args.try_number or store.get_task_instance(key).try_number
        out.write(store.read_log(key, try_number).text)
        return EXIT_OK
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    finally:
        store.close()
