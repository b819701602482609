"""``pipeline-core events``: follow a server's live event stream from a terminal."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
from typing import TextIO
from urllib.parse import urlencode, urlsplit

from pipeline_core.cli.common import whole_number

RETRY_SECONDS = 1.0


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
    url = urlsplit(args.server)
    query = {
        k: v
        for k, v in (("dag_id", args.dag_id), ("run_id", args.run_id), ("types", args.types))
        if v
    }
    path = "/api/v1/events" + (f"?{urlencode(query)}" if query else "")
    host, port = url.hostname or "127.0.0.1", url.port or 80
    where = f"http://{host}:{port}{path}"
    last_id: str | None = None
    failures = 0
    while True:
        try:
            last_id = _stream_once(host, port, path, args.token, last_id, out)
            failures = 0
        except KeyboardInterrupt:
            return 0
        except _Refused as exc:
            sys.stderr.write(f"error: {where}: {exc}\n")
            return 1
        except OSError as exc:
            failures += 1
            reason = exc.strerror or str(exc) or type(exc).__name__
            if failures >= args.max_tries:
                sys.stderr.write(
                    f"error: cannot reach {where} ({reason}); gave up after {failures} tries\n"
                )
                return 1
            sys.stderr.write(f"cannot reach {where} ({reason}); trying again\n")
        if args.once and failures == 0:
            return 0
        time.sleep(RETRY_SECONDS)


class _Refused(Exception):
    pass


def _stream_once(
    host: str, port: int, path: str, token: str | None, last_id: str | None, out: TextIO
) -> str | None:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if last_id:
        headers["Last-Event-ID"] = last_id
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    if response.status != 200:
        body = response.read().decode(errors="replace")
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = body.strip()
        raise _Refused(f"{response.status}: {message}")
    sys.stderr.write(f"following http://{host}:{port}{path}\n")
    sys.stderr.flush()
    fields: dict[str, str] = {}
    try:
        for raw in iter(response.fp.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if line == "":
                if "data" in fields:
                    last_id = fields.get("id", last_id)
                    out.write(describe(fields.get("event", "message"), fields["data"]) + "\n")
                    out.flush()
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.lstrip(" ")
    finally:
        connection.close()
    return last_id


def describe(event_type: str, data: str) -> str:
    """One readable line for an event."""
    try:
        e = json.loads(data)
    except ValueError:
        return f"{event_type} {data}"
    if event_type == "task.state_changed":
        error = f"  {e['error']}" if e.get("error") else ""
        return (
            f"{e['timestamp']}  #{e['seq']}  {e['dag_id']}/{e['run_id']}/{e['task_id']}  "
            f"{e['previous_state']} → {e['new_state']}  (try {e['try_number']}){error}"
        )
    if event_type == "run.state_changed":
        change = f"{e['previous_state']} → {e['new_state']}"
        return f"{e['timestamp']}  #{e['seq']}  run {e['dag_id']}/{e['run_id']}  {change}"
    if event_type == "reset":
        return f"reset: {e.get('reason')} (first kept event #{e.get('first_seq')})"
    return f"{e.get('timestamp', '')}  #{e.get('seq', '?')}  {event_type}  {data}"
