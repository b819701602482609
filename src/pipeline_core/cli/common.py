"""What the command groups share: exit codes, the folder, database and engine options, argparse
types, logging and waiting for a signal."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from pipeline_core.dag.mapping import DEFAULT_MAX_LENGTH, MAX_LENGTH
from pipeline_core.dag.model import DAG, EXECUTORS, LOCAL_EXECUTORS
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.engine.executors.celery.app import CelerySettings
from pipeline_core.engine.settings import default_workers
from pipeline_core.errors import ConfigurationError, PipelineError
from pipeline_core.scheduler.parsed import default_path
from pipeline_core.store import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_DB = "sqlite:///.pipeline-core/pipeline.db"


def folder_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dags-folder",
        default=os.environ.get("PIPELINE_CORE_DAGS_FOLDER", "dags"),
        help="folder of DAG files (env PIPELINE_CORE_DAGS_FOLDER; default ./dags)",
    )


def db_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get("PIPELINE_CORE_DB", default or DEFAULT_DB),
        help=f"database URL (env PIPELINE_CORE_DB; default {default or DEFAULT_DB})",
    )


def folder_watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rescan-interval",
        type=float,
        default=30.0,
        help="seconds between checks of every DAG file's modification time, size and inode "
        "(a file is read only when they changed)",
    )
    parser.add_argument(
        "--no-watch",
        action="store_true",
        help="do not watch the DAGs folder for changes (inotify); find them at each rescan",
    )
    parser.add_argument(
        "--dag-cache",
        metavar="PATH",
        help="where parsed YAML DAG files are kept across restarts (default: in "
        "$PIPELINE_CORE_CACHE_DIR, or ~/.cache/pipeline-core); '' keeps none",
    )


def parsed_cache(args: argparse.Namespace) -> Path | None:
    """The cache of parsed DAG files ``--dag-cache`` asks for (None: keep none)."""
    if args.dag_cache is None:
        return default_path(args.dags_folder)
    return Path(args.dag_cache) if args.dag_cache else None


def on_store(
    handler: Callable[[Store, argparse.Namespace, TextIO], int],
) -> Callable[[argparse.Namespace, TextIO], int]:
    """A command run on the store of its ``--db`` (``db_option``); a refusal of the store
    is said on stderr (exit 1)."""

    def run(args: argparse.Namespace, out: TextIO) -> int:
        from pipeline_core.store import open_store

        store = open_store(args.db)
        try:
            return handler(store, args, out)
        except PipelineError as exc:
            sys.stderr.write(f"error: {exc.message}\n")
            return EXIT_FAILED
        finally:
            store.close()

    return run


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number ≥ ``minimum`` (argparse names the flag in errors)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            what = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise argparse.ArgumentTypeError(f"{what}, got {value}")
        return value

    return parse


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < 10**9:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Where task code runs: the commands that start an engine share these."""
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="worker",
        help="where tasks run unless they say otherwise: warm worker processes (default), a "
        "fresh interpreter per try, threads of this process (trusted code only), or Celery "
        "workers (needs --broker)",
    )
    add_broker_options(parser)
    parser.add_argument(
        "--workers",
        type=whole_number(1),
        default=default_workers(),
        help=f"worker processes kept warm (default: one per core, at least 2: {default_workers()})",
    )
    parser.add_argument(
        "--max-workers",
        type=whole_number(1),
        default=32,
        help="tries running at once at most; the pool grows to this when all workers are busy",
    )
    parser.add_argument(
        "--max-tasks-per-worker",
        type=whole_number(0),
        default=0,
        help="replace a worker process after this many tries (default 0: never)",
    )
    parser.add_argument(
        "--worker-preload",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE once before workers are forked (repeatable)",
    )
    parser.add_argument(
        "--max-map-length",
        type=whole_number(1),
        default=DEFAULT_MAX_LENGTH,
        help="instances a mapped task may have unless it says otherwise; more fail the task "
        f"(default {DEFAULT_MAX_LENGTH:,}, at most {MAX_LENGTH:,})",
    )


def add_broker_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The Celery broker and how tries travel through it (engines and workers alike)."""
    env = os.environ.get("PIPELINE_CORE_BROKER")
    parser.add_argument(
        "--broker",
        default=env,
        required=required and env is None,
        metavar="URL",
        help="Celery broker for tries of 'executor: celery' tasks: redis://HOST:6379/0 or "
        "amqp://USER:PASSWORD@HOST:5672// (env PIPELINE_CORE_BROKER)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=seconds,
        default=3600.0,
        help="Redis: seconds before a try taken by a worker that never acknowledged it goes "
        "out again (default 3600)",
    )
    parser.add_argument(
        "--worker-lost-after",
        type=seconds,
        default=30.0,
        help="a worker silent this long has lost its tries; they fail and are retried as new "
        "tries (default 30)",
    )
    parser.add_argument(
        "--queue-per-pool",
        action="store_true",
        help="send each try to the queue of its pool, pipeline-core.<pool>, instead of one queue",
    )


def celery_settings(args: argparse.Namespace) -> CelerySettings | None:
    """The broker settings the command line asks for (``None`` without ``--broker``)."""
    if not args.broker:
        return None
    return CelerySettings(
        args.broker,
        visibility_timeout=args.visibility_timeout,
        queue_per_pool=args.queue_per_pool,
        worker_lost_after=args.worker_lost_after,
    )


def engine_executors(args: argparse.Namespace) -> tuple[str, ...]:
    """The executors an engine started with ``args`` has: Celery only with a broker."""
    return EXECUTORS if args.broker else LOCAL_EXECUTORS


def start_engine(
    store: Store,
    args: argparse.Namespace,
    dags: dict[str, DAG] | None = None,
    *,
    sole: bool = False,
    **kwargs: Any,
) -> Engine | None:
    """An engine as the command line asks for it, started; ``None`` (reason on stderr) when
    it cannot run tasks. ``sole``: it holds the active-engine claim."""
    if args.executor == "celery" and not args.broker:
        sys.stderr.write("error: --executor celery needs --broker URL (or PIPELINE_CORE_BROKER)\n")
        return None
    settings = EngineSettings(
        sole_engine=sole,
        default_executor=args.executor,
        workers=args.workers,
        max_workers=max(args.workers, args.max_workers),
        max_tasks_per_worker=args.max_tasks_per_worker,
        worker_preload=tuple(args.worker_preload),
        max_map_length=min(args.max_map_length, MAX_LENGTH),
        celery=celery_settings(args),
    )
    try:
        return Engine(store, dags, settings=settings, **kwargs).start()
    except ConfigurationError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return None


def check_dags_folder(folder: str) -> bool:
    """A missing DAGs folder is an error (``False``, reason on stderr); an empty one works
    but is worth a warning, since nothing will run."""
    path = Path(folder)
    if not path.is_dir():
        sys.stderr.write(
            f"error: the DAGs folder {str(path.resolve())!r} does not exist "
            "(set --dags-folder or PIPELINE_CORE_DAGS_FOLDER)\n"
        )
        return False
    if not any(p.suffix in (".py", ".yaml", ".yml") for p in path.rglob("*") if p.is_file()):
        logging.getLogger("pipeline_core").warning(
            "the DAGs folder %s has no DAG files (*.py, *.yaml): nothing will run", path.resolve()
        )
    return True


def stop_on_signals() -> threading.Event:
    """An event set on SIGINT or SIGTERM. The handler only starts a thread that sets it: a
    handler that set it itself runs on the main thread, and a second signal arriving while
    the first one's ``set`` holds the event's lock would deadlock the process."""
    stop = threading.Event()

    def handler(*_: object) -> None:
        threading.Thread(target=stop.set, name="stop-signal", daemon=True).start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return stop


def wait_until_set(event: threading.Event) -> None:
    """Block the main thread until ``event`` is set. Waking now and then lets Python run a
    signal handler even when the signal was delivered to another thread, which a wait
    without a timeout would never notice."""
    while not event.wait(timeout=1.0):
        pass


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def table(out: TextIO, columns: list[str], rows: list[dict[str, Any]]) -> None:
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)
