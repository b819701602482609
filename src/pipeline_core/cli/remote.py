"""What the commands that talk to a server share: ``--server``, ``--token`` and ``--output``,
the exit codes, and turning client errors into one line on stderr.

Exit codes: 0 success, 1 the run (or the command) failed, 2 the run was cancelled or the wait
timed out, 3 a usage or client error (bad input, unknown DAG or run, a refused token), 4 the
server could not be reached.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

from pipeline_core.client import APIError, Client, ServerUnreachable

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED, EXIT_CLIENT, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
DEFAULT_SERVER = "http://127.0.0.1:8080"
Handler = Callable[[argparse.Namespace, TextIO], int]


class RemoteParser(argparse.ArgumentParser):
    """A command's parser whose usage errors exit with 3, as every client error does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CLIENT, f"{self.prog}: error: {message}\n")


def server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=None,
        metavar="URL",
        help=f"the API server (env PIPELINE_CORE_SERVER; default {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("PIPELINE_CORE_API_TOKEN"),
        help="bearer token (env PIPELINE_CORE_API_TOKEN)",
    )
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="text (default) or JSON"
    )
    parser.set_defaults(quick_exit=True)


def client_of(args: argparse.Namespace) -> Client:
    server = args.server or os.environ.get("PIPELINE_CORE_SERVER") or DEFAULT_SERVER
    try:
        return Client(server, args.token, timeout=30.0, retries=3)
    except ValueError as exc:
        raise UsageError(f"--server: {exc}") from None


class UsageError(Exception):
    """Input the command refuses before it asks the server anything."""


def remote(handler: Handler) -> Handler:
    """Run ``handler``, turning client errors into a line on stderr and an exit code."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace, out: TextIO) -> int:
        try:
            return handler(args, out)
        except UsageError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_CLIENT
        except APIError as exc:
            sys.stderr.write(f"error: {exc.message} ({exc.status} {exc.code})\n")
            if exc.status == 503:
                return EXIT_UNREACHABLE
            return EXIT_CLIENT if exc.status < 500 else EXIT_FAILED
        except ServerUnreachable as exc:
            sys.stderr.write(f"error: {exc}\n")
            return EXIT_UNREACHABLE
        except KeyboardInterrupt:
            return 130

    return run


def read_conf(text: str | None) -> dict[str, Any]:
    """``--conf``: a JSON object, or ``@file`` holding one. ``UsageError`` pointing at the
    character where the JSON goes wrong."""
    if not text:
        return {}
    source = "--conf"
    if text.startswith("@"):
        path = Path(text[1:])
        source = f"--conf {text}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{source}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{source}: cannot read it ({exc})") from None
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
        pointer = f"\n  {line}\n  {' ' * (exc.colno - 1)}^"
        raise UsageError(
            f"{source} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{pointer}"
        ) from None
    if not isinstance(conf, dict):
        raise UsageError(f"{source} must be a JSON object, got {type(conf).__name__}")
    return conf


def show(args: argparse.Namespace, out: TextIO, data: Any, text: Callable[[Any], str]) -> None:
    """``data`` as JSON (``--output json``) or as ``text(data)``."""
    if args.output == "json":
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(text(data).rstrip("\n") + "\n")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
