"""``pipeline-core runs``: trigger, watch and operate runs on a server.

``runs trigger --wait`` and ``runs watch`` follow the run's events (no polling): a line per
task state change, a progress line on a terminal, and an exit code from how the run ended (see
``cli.remote``). A server restart mid-wait is ridden out: the stream resumes from its last id.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from pipeline_core.cli.common import seconds
from pipeline_core.cli.remote import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    RemoteParser,
    client_of,
    read_conf,
    remote,
    server_options,
    show,
    table,
)
from pipeline_core.client import Client, Event, StreamTimedOut

FINISHED = {"success": EXIT_OK, "failed": EXIT_FAILED, "cancelled": EXIT_CANCELLED}
TASK_COLUMNS = ["task_id", "state", "try_number", "duration_ms", "error"]
#: Seconds to replay the story of a run that has ended (its events may have been trimmed).
REPLAY_SECONDS = 10.0
RUN_COLUMNS = ["run_id", "state", "run_type", "logical_date", "start_date", "end_date"]


def add_commands(commands: Any) -> None:
    runs = commands.add_parser("runs", help="trigger, watch and operate runs on a server")
    sub = runs.add_subparsers(title="runs", parser_class=RemoteParser)

    def command(name: str, handler: Any, help_text: str, *, run: bool = True) -> Any:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("dag_id")
        if run:
            parser.add_argument("run_id")
        server_options(parser)
        parser.set_defaults(handler=remote(handler))
        return parser

    trigger = command("trigger", _trigger, "trigger a run (and wait for it)", run=False)
    trigger.add_argument("--conf", help="the run's conf: a JSON object, or @FILE holding one")
    trigger.add_argument("--run-id")
    trigger.add_argument("--logical-date", help="ISO 8601 (default: now)")
    trigger.add_argument("--note")
    trigger.add_argument(
        "--priority", type=int, help="higher runs start first, and their tries (default 0)"
    )
    trigger.add_argument(
        "--idempotency-key",
        help="a repeat with the same key and conf answers the first run instead of a new one",
    )
    trigger.add_argument("--wait", action="store_true", help="follow the run until it ends")
    wait_options(trigger)
    wait_options(command("watch", _watch, "follow a run until it ends"))
    listing = command("list", _list, "a DAG's runs, newest first", run=False)
    listing.add_argument("--state", action="append", default=[], help="repeatable")
    listing.add_argument("--limit", type=int, default=25)
    command("get", _get, "a run with its task instances")
    command("cancel", _cancel, "cancel a run")
    retry = command("retry", _retry, "queue failed tasks again")
    retry.add_argument("--task", action="append", dest="tasks", help="repeatable")
    retry.add_argument("--no-downstream", action="store_true")
    mark = command("mark", _mark, "mark a run success or failed")
    mark.add_argument("state", choices=("success", "failed"))
    clear = command("clear", _clear, "clear finished tasks so they run again")
    clear.add_argument("--task", action="append", dest="tasks", help="repeatable")
    clear.add_argument("--only-failed", action="store_true")
    clear.add_argument("--downstream", action="store_true", help="their downstream tasks too")
    clear.add_argument("--dry-run", action="store_true", help="list them, change nothing")


def wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout", type=seconds, help="give up (exit 2) after this many seconds (default: never)"
    )


def _trigger(args: argparse.Namespace, out: TextIO) -> int:
    conf = read_conf(args.conf)
    with client_of(args) as client:
        triggered = client.trigger_run(
            args.dag_id,
            conf,
            run_id=args.run_id,
            logical_date=args.logical_date,
            note=args.note,
            idempotency_key=args.idempotency_key,
            priority=args.priority,
        )
        run = triggered.run
        said = "is the run of that idempotency key" if triggered.replayed else "triggered"
        message = f"run {run['run_id']} of {run['dag_id']} {said} ({run['state']})"
        if not args.wait:
            show(args, out, {**run, "idempotent_replay": triggered.replayed}, lambda _: message)
            return EXIT_OK
        sys.stderr.write(message + "\n")
        return watch(client, args, out, run["dag_id"], run["run_id"])


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        return watch(client, args, out, args.dag_id, args.run_id)


def watch(client: Client, args: argparse.Namespace, out: TextIO, dag_id: str, run_id: str) -> int:
    """Show the run's story from its events, live until it ends; the exit code says how."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    run = client.get_run(dag_id, run_id)
    if run["state"] in FINISHED:  # its story is stored: replay it, briefly
        deadline = min(deadline or float("inf"), time.monotonic() + REPLAY_SECONDS)
    lines = sys.stderr if args.output == "json" else out
    progress = Progress({t["task_id"]: t["state"] for t in run["task_instances"]})
    try:
        for event in client.events(
            dag_id=dag_id,
            run_id=run_id,
            types=("task.state_changed", "run.state_changed"),
            last_event_id=0,  # the run's whole story: nothing between trigger and now is lost
            until=deadline,
        ):
            if _follow(event, lines, progress):
                latest = client.get_run(dag_id, run_id)
                if _ended_by(latest, event):
                    run = latest
                    break
    except StreamTimedOut:
        if run["state"] not in FINISHED:
            progress.clear()
            state = client.get_run(dag_id, run_id)["state"]
            sys.stderr.write(
                f"error: timed out after {args.timeout:g}s; run {run_id} is still {state}\n"
            )
            return EXIT_CANCELLED
    progress.clear()
    show(args, out, run, _describe_run)
    return FINISHED.get(run["state"], EXIT_FAILED)


def _ended_by(run: dict[str, Any], event: Event) -> bool:
    """Whether ``event`` is the run's latest end (an earlier end, before a retry, is not)."""
    return run["state"] in FINISHED and run.get("end_date") == event.data.get("timestamp")


def _follow(event: Event, lines: TextIO, progress: Progress) -> bool:
    """Show one event; ``True`` when it ends the run (for now)."""
    data = event.data
    if event.type == "task.state_changed":
        progress.clear()
        error = f"  {data['error']}" if data.get("error") else ""
        lines.write(
            f"{data.get('timestamp', '')[11:19]}  {data.get('task_id')}  "
            f"{data.get('previous_state')} → {data.get('new_state')}  "
            f"(try {data.get('try_number')}){error}\n"
        )
        lines.flush()
        progress.states[data.get("task_id", "")] = data.get("new_state", "")
        progress.draw()
        return False
    return event.type == "run.state_changed" and data.get("new_state") in FINISHED


class Progress:
    """One line on a terminal's stderr: how many tasks are done and which run now."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.shown = False
        self.live = sys.stderr.isatty()

    def draw(self) -> None:
        if not self.live:
            return
        done = sum(s in ("success", "failed", "skipped", "upstream_failed", "cancelled",
                         "removed") for s in self.states.values())  # fmt: skip
        running = [t for t, s in self.states.items() if s == "running"]
        line = f"[{done}/{len(self.states)} done] running: {', '.join(running) or '-'}"
        sys.stderr.write("\r" + line[:120].ljust(120))
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 120 + "\r")
            self.shown = False


def _describe_run(run: dict[str, Any]) -> str:
    head = f"run {run['run_id']} of {run['dag_id']}: {run['state']}"
    if run.get("task_instances") is None:
        return head
    return head + "\n" + table(run["task_instances"], TASK_COLUMNS)


def _list(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        runs = client.list_runs(args.dag_id, state=args.state, limit=args.limit)
    show(args, out, runs, lambda rows: table(rows, RUN_COLUMNS))
    return EXIT_OK


def _get(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        show(args, out, client.get_run(args.dag_id, args.run_id), _describe_run)
    return EXIT_OK


def _cancel(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        show(args, out, client.cancel_run(args.dag_id, args.run_id), _describe_run)
    return EXIT_OK


def _retry(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        answer = client.retry_run(
            args.dag_id, args.run_id, args.tasks, downstream=not args.no_downstream
        )
    show(args, out, answer, lambda a: f"queued again: {', '.join(a['requeued_task_ids'])}")
    return EXIT_OK


def _mark(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        show(args, out, client.mark_run(args.dag_id, args.run_id, args.state), _describe_run)
    return EXIT_OK


def _clear(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        answer = client.clear_run(
            args.dag_id,
            args.run_id,
            args.tasks,
            only_failed=args.only_failed,
            include_downstream=args.downstream,
            dry_run=args.dry_run,
        )
    verb = "would clear" if answer["dry_run"] else "cleared"
    show(args, out, answer, lambda a: f"{verb}: {', '.join(a['task_ids']) or 'nothing'}")
    return EXIT_OK
