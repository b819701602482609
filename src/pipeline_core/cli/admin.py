"""Server commands beside runs: ``dags pause|unpause``, ``pools list|set|delete`` and
``backfill`` (which can wait for its runs)."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from typing import Any, TextIO

from pipeline_core.cli.common import seconds, whole_number
from pipeline_core.cli.remote import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    RemoteParser,
    client_of,
    remote,
    server_options,
    show,
    table,
)
from pipeline_core.client import Client, StreamTimedOut

POOL_COLUMNS = ["name", "slots", "running", "queued", "description"]


def add_dag_commands(dags: Any) -> None:
    """``dags pause|unpause DAG_ID``, on a server."""
    for name, paused in (("pause", True), ("unpause", False)):
        parser = dags.add_parser(name, help=f"{name} a DAG on a server")
        parser.add_argument("dag_id")
        server_options(parser)
        parser.set_defaults(handler=remote(_pause), paused=paused)


def add_commands(commands: Any) -> None:
    pools = commands.add_parser("pools", help="list, size and delete pools on a server")
    sub = pools.add_subparsers(title="pools", parser_class=RemoteParser)
    listing = sub.add_parser("list", help="every pool with its use")
    server_options(listing)
    listing.set_defaults(handler=remote(_pools_list))
    resize = sub.add_parser("set", help="create a pool, or change its slots")
    resize.add_argument("name")
    resize.add_argument("slots", type=whole_number(0))
    resize.add_argument("--description")
    resize.add_argument("--rate", help="at most so many tries start: N/s, N/m or N/h; '' for none")
    resize.add_argument("--burst", type=whole_number(1), help="tries a rate lets start at once")
    server_options(resize)
    resize.set_defaults(handler=remote(_pools_set))
    delete = sub.add_parser("delete", help="delete a pool no running try uses")
    delete.add_argument("name")
    server_options(delete)
    delete.set_defaults(handler=remote(_pools_delete))

    backfill = commands.add_parser(
        "backfill",
        help="run a DAG for the fire times of a past range, on a server",
        description="Plain dates (2026-03-01) cover whole days in the DAG's timezone.",
    )
    backfill.error = functools.partial(RemoteParser.error, backfill)  # usage errors exit 3
    backfill.add_argument("dag_id")
    backfill.add_argument("--from", dest="start", required=True, metavar="DATE")
    backfill.add_argument("--to", dest="end", required=True, metavar="DATE")
    backfill.add_argument("--max-active-runs", type=whole_number(1), default=10)
    backfill.add_argument("--reprocess", choices=("none", "failed", "all"), default="none")
    backfill.add_argument("--dry-run", action="store_true", help="list the dates, run nothing")
    backfill.add_argument("--wait", action="store_true", help="wait until every run has ended")
    backfill.add_argument("--timeout", type=seconds, help="with --wait: give up (exit 2) after")
    server_options(backfill)
    backfill.set_defaults(handler=remote(_backfill))


def _pause(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        dag = client.set_paused(args.dag_id, args.paused)
    word = "paused" if dag["is_paused"] else "unpaused"
    show(args, out, dag, lambda d: f"DAG {d['dag_id']} is {word}")
    return EXIT_OK


def _pools_list(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        show(args, out, client.pools.list(), lambda rows: table(rows, POOL_COLUMNS))
    return EXIT_OK


def _pools_set(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        names = {p["name"] for p in client.pools.list()}
        limit = {"rate": args.rate, "burst": args.burst}
        if args.name in names:
            pool = client.pools.update(
                args.name, slots=args.slots, description=args.description, **limit
            )
        else:
            limit["burst"] = args.burst or 1
            pool = client.pools.create(args.name, args.slots, args.description, **limit)
    show(args, out, pool, lambda p: f"pool {p['name']}: {p['slots']} slots")
    return EXIT_OK


def _pools_delete(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        show(args, out, client.pools.delete(args.name), lambda _: f"pool {args.name} deleted")
    return EXIT_OK


def _backfill(args: argparse.Namespace, out: TextIO) -> int:
    with client_of(args) as client:
        answer = client.backfills.create(
            args.dag_id,
            args.start,
            args.end,
            max_active_runs=args.max_active_runs,
            reprocess=args.reprocess,
            dry_run=args.dry_run,
        )
        if args.dry_run:
            show(args, out, answer, _describe_plan)
            return EXIT_OK
        if not args.wait:
            show(args, out, answer, _describe_backfill)
            return EXIT_OK
        sys.stderr.write(f"backfill {answer['id']}: {answer['total']} run(s)\n")
        return _wait(client, args, out, answer)


def _wait(client: Client, args: argparse.Namespace, out: TextIO, backfill: dict[str, Any]) -> int:
    """Until the backfill ends, woken by its DAG's run and backfill events."""
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        for event in client.events(
            dag_id=args.dag_id,
            types=("run.state_changed", "backfill.updated"),
            until=deadline,
        ):
            if event.type == "run.state_changed" and str(event.run_id).startswith("backfill__"):
                sys.stderr.write(f"{event.run_id}: {event.data.get('new_state')}\n")
            # Also on "open": the backfill may have ended before the stream was subscribed.
            backfill = client.backfills.get(args.dag_id, backfill["id"])
            if backfill["state"] != "running":
                break
    except StreamTimedOut:
        sys.stderr.write(f"error: timed out after {args.timeout:g}s; the backfill goes on\n")
        return EXIT_CANCELLED
    show(args, out, backfill, _describe_backfill)
    if backfill["state"] == "cancelled":
        return EXIT_CANCELLED
    return EXIT_FAILED if backfill["counts"].get("failed") else EXIT_OK


def _describe_plan(plan: dict[str, Any]) -> str:
    rows = [
        {"logical_date": d["logical_date"], "action": d["action"], "run": d["existing_run_id"]}
        for d in plan["dates"]
    ]
    return f"{plan['runs']} run(s) to create\n" + table(rows, ["logical_date", "action", "run"])


def _describe_backfill(backfill: dict[str, Any]) -> str:
    counts = ", ".join(f"{state} {n}" for state, n in sorted(backfill["counts"].items()))
    return f"backfill {backfill['id']} of {backfill['dag_id']}: {backfill['state']} ({counts})"
