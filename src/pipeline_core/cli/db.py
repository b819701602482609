"""``pipeline-core db clean``: delete finished runs past an age from a database, with all their
rows, in short transactions (a running server keeps working), optionally archived first;
and the ``--retention`` option that does it on a schedule."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from typing import Any, TextIO

from pipeline_core.cli.common import EXIT_FAILED, EXIT_OK, db_option, on_store, stop_on_signals
from pipeline_core.dag.model import parse_duration
from pipeline_core.model import iso, utcnow
from pipeline_core.retention.archive import Archive, ArchiveError
from pipeline_core.retention.clean import Cleaner, CleanReport
from pipeline_core.retention.policy import RetentionPolicy
from pipeline_core.store import Store

MIB = 1 << 20


def age(text: str) -> timedelta:
    """An argparse type: an age such as ``90d``, ``12h`` or ``1d12h`` (more than nothing)."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < seconds < 10**11:
        raise argparse.ArgumentTypeError(f"must be more than 0 (e.g. 90d), got {text!r}")
    return timedelta(seconds=seconds)


def add_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="work on the database itself")
    sub = db.add_subparsers(title="db")
    clean = sub.add_parser(
        "clean",
        help="delete finished runs older than an age, with their rows",
        description="Deletes the finished runs (success, failed, cancelled) that ended more "
        "than --older-than ago, with their task instances, XCom, logs, notifications and "
        "events, a few milliseconds at a time; statistics keep their figures. Safe beside a "
        "running server, and to stop and start again.",
    )
    clean.add_argument("--older-than", type=age, required=True, metavar="AGE",
                       help="e.g. 90d, 12h, 1d12h")  # fmt: skip
    clean.add_argument("--dag-id", action="append", default=[], metavar="DAG_ID",
                       help="only this DAG's runs (repeat for more)")  # fmt: skip
    clean.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    clean.add_argument(
        "--archive",
        metavar="FILE.jsonl.gz",
        help="append each run, every row of it, to this file before deleting it",
    )
    db_option(clean)
    clean.set_defaults(handler=on_store(_clean))
    vacuum = sub.add_parser(
        "vacuum",
        help="rewrite a SQLite file whole, giving all its free space back",
        description="Rewrites a SQLite database file, giving back all its free space and "
        "switching a file made by an older version to incremental vacuum (so later clean-ups "
        "give space back as they go). Writers wait while it runs: stop the server first. "
        "On PostgreSQL there is nothing to do (autovacuum).",
    )
    db_option(vacuum)
    vacuum.set_defaults(handler=on_store(_vacuum))


def add_retention_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retention",
        type=age,
        metavar="AGE",
        help="delete finished runs that ended more than AGE ago (e.g. 90d), checked hourly; "
        "statistics keep their figures (default: keep everything)",
    )


def start_retention(store: Store, args: argparse.Namespace) -> RetentionPolicy | None:
    return RetentionPolicy(store, args.retention).start() if args.retention else None


def _clean(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    now = utcnow()
    before = now - args.older_than
    scope = ", ".join(args.dag_id) if args.dag_id else "every DAG"
    if args.dry_run:
        old = store.retention.count_old(before, dag_ids=args.dag_id)
        out.write(
            f"would delete {old.runs:,} run(s) with {old.task_instances:,} task instance(s) "
            f"of {scope} that ended before {iso(before)}\n"
        )
        return EXIT_OK
    try:
        archive = Archive.open(args.archive) if args.archive else None
    except ArchiveError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    cleaner = Cleaner(store, before, dag_ids=args.dag_id, archive=archive,
                      stop=stop_on_signals(), on_step=_progress())  # fmt: skip
    try:
        report = cleaner.run(now)
    except ArchiveError as exc:
        sys.stderr.write(f"error: {exc}; nothing of the runs not archived was deleted\n")
        return EXIT_FAILED
    finally:
        if archive is not None:
            archive.close()
    out.write(_summary(report, before, scope, archive))
    if report.stopped:
        sys.stderr.write("stopped: run the same command again to carry on\n")
        return EXIT_FAILED
    return EXIT_OK


def _vacuum(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    freed = store.retention.compact()
    out.write(f"gave {freed / MIB:.1f} MiB back to the file system\n")
    return EXIT_OK


def _progress() -> Any:
    last = [time.monotonic()]

    def tell(report: CleanReport) -> None:
        if time.monotonic() - last[0] >= 2.0:
            last[0] = time.monotonic()
            sys.stderr.write(f"… {report.runs:,} run(s), {report.rows:,} rows deleted\n")

    return tell


def _summary(report: CleanReport, before: Any, scope: str, archive: Archive | None) -> str:
    lines = [
        f"deleted {report.runs:,} run(s) of {scope} that ended before {iso(before)}, "
        f"{report.rows:,} rows in all, in {report.seconds:.1f}s "
        f"(longest transaction {report.longest_step * 1000:.0f} ms)"
    ]
    if report.kept:
        lines.append(f"kept {report.kept:,} run(s) retried while the clean-up ran")
    if report.events:
        lines.append(f"trimmed {report.events:,} older event(s) from the event log")
    if report.reclaimed:
        lines.append(f"gave {report.reclaimed / MIB:.1f} MiB back to the file system")
    if archive is not None:
        lines.append(f"archived {archive.runs:,} run(s) to {archive.path}")
    return "".join(line + "\n" for line in lines)
