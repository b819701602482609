"""Options of the commands that start an engine: where task code runs, and how many worker
processes it gets."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pipeline_core.dag.model import DAG, EXECUTORS
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.engine.settings import default_workers
from pipeline_core.errors import ConfigurationError
from pipeline_core.store import Store


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
        "fresh interpreter per try, or threads of this process (trusted code only)",
    )
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


def start_engine(
    store: Store, args: argparse.Namespace, dags: dict[str, DAG] | None = None, **kwargs: Any
) -> Engine | None:
    """An engine as the command line asks for it, started; ``None`` (reason on stderr) when
    it cannot run tasks."""
    settings = EngineSettings(
        default_executor=args.executor,
        workers=args.workers,
        max_workers=max(args.workers, args.max_workers),
        max_tasks_per_worker=args.max_tasks_per_worker,
        worker_preload=tuple(args.worker_preload),
    )
    try:
        return Engine(store, dags, settings=settings, **kwargs).start()
    except ConfigurationError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return None
