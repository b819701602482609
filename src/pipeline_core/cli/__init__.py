"""The ``pipeline-core`` command: one module per command group (``dags``, ``runs``,
``tasks``, ``pools`` and ``backfill``, ``events``, and the long-running ``scheduler``,
``serve``, ``api`` and ``worker``). The commands that work on a server share ``cli.remote``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pipeline_core._version import __version__
from pipeline_core.cli import admin, dags, events, runs, services, tasks, worker
from pipeline_core.cli.common import EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    result: int = args.handler(args, sys.stdout)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline-core", description="Workflow orchestrator.")
    parser.add_argument("--version", action="version", version=f"pipeline-core {__version__}")
    commands = parser.add_subparsers(title="commands")
    for group in (dags, runs, tasks, admin, services, worker, events):
        group.add_commands(commands)
    return parser
