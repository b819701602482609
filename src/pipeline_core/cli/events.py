"""``pipeline-core events``: follow a server's live event stream from a terminal, through
``pipeline_core.client`` (which resumes from the last id after a dropped connection)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

from pipeline_core.cli.common import whole_number
from pipeline_core.client import APIError, Client, ServerUnreachable
from pipeline_core.client.events import OPEN


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = commands.add_parser("events", help="print the live event stream of a server")
    events.add_argument(
        "--server", default=os.environ.get("PIPELINE_CORE_SERVER", "http://127.0.0.1:8080")
    )
    events.add_argument("--dag-id")
    events.add_argument("--run-id")
    events.add_argument("--types", help="comma-separated: task.state_changed,run.state_changed,...")
    events.add_argument("--token", default=os.environ.get("PIPELINE_CORE_API_TOKEN"))
    events.add_argument(
        "--once", action="store_true", help="stop when the stream ends instead of resuming"
    )
    events.add_argument(
        "--max-tries",
        type=whole_number(1),
        default=10,
        help="connection attempts in a row before giving up with exit code 1 (default 10)",
    )
    events.set_defaults(handler=follow_events)


def follow_events(args: argparse.Namespace, out: TextIO) -> int:
    """Print each event as a line; after a dropped connection, resume from the last id."""
    try:
        client = Client(args.server, args.token, retries=0)
    except ValueError as exc:
        sys.stderr.write(f"error: --server: {exc}\n")
        return 1
    where = f"{client.transport.base_url}/api/v1/events"
    types = tuple(t for t in (args.types or "").split(",") if t)
    try:
        for event in client.events(
            dag_id=args.dag_id,
            run_id=args.run_id,
            types=types,
            max_tries=args.max_tries,
            resume=not args.once,
        ):
            if event.type == OPEN:
                sys.stderr.write(f"following {where}\n")
                sys.stderr.flush()
                continue
            out.write(describe(event.type, event.data) + "\n")
            out.flush()
    except KeyboardInterrupt:
        return 0
    except APIError as exc:
        sys.stderr.write(f"error: {where}: {exc.status}: {exc.message}\n")
        return 1
    except ServerUnreachable as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


def describe(event_type: str, e: dict[str, Any]) -> str:
    """One readable line for an event."""
    if event_type == "task.state_changed":
        error = f"  {e['error']}" if e.get("error") else ""
        return (
            f"{e.get('timestamp')}  #{e.get('seq')}  {e.get('dag_id')}/{e.get('run_id')}/"
            f"{e.get('task_id')}  {e.get('previous_state')} → {e.get('new_state')}  "
            f"(try {e.get('try_number')}){error}"
        )
    if event_type == "run.state_changed":
        run = f"{e.get('dag_id')}/{e.get('run_id')}"
        change = f"{e.get('previous_state')} → {e.get('new_state')}"
        return f"{e.get('timestamp')}  #{e.get('seq')}  run {run}  {change}"
    if event_type == "reset":
        return f"reset: {e.get('reason')} (first kept event #{e.get('first_seq')})"
    return f"{e.get('timestamp', '')}  #{e.get('seq', '?')}  {event_type}  {json.dumps(e)}"
