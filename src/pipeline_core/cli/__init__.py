"""The ``pipeline-core`` command: one module per command group (``dags``, ``runs``,
``tasks``, ``pools`` and ``backfill``, ``events``, ``notifications``, ``assets``, ``db``, and the
long-running ``scheduler``, ``serve``, ``api`` and ``worker``). The commands that work on a
server share ``cli.remote``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pipeline_core._version import __version__
from pipeline_core.cli import (
    accounts,
    admin,
    assets,
    credentials,
    dags,
    db,
    events,
    notifications,
    runs,
    services,
    tasks,
    worker,
)
from pipeline_core.cli.common import EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    result: int = args.handler(args, sys.stdout)
    if getattr(args, "quick_exit", False) and argv is None:  # this process is the command's
        # Tearing the interpreter down after importing the package costs 40-80 ms, which a
        # CI job waiting for a run would wait on too; a command on a server leaves nothing
        # to tear down but its output.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(result)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline-core", description="Workflow orchestrator.")
    parser.add_argument("--version", action="version", version=f"pipeline-core {__version__}")
    commands = parser.add_subparsers(title="commands")
    groups = (dags, runs, tasks, admin, services, worker, events, notifications, assets,
              credentials, accounts, db)  # fmt: skip
    for group in groups:
        group.add_commands(commands)
    return parser
