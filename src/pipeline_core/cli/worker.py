"""``pipeline-core worker``: run tries of ``executor: celery`` tasks sent by the active
engine, from the same DAG files, reporting through the shared store."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, TextIO

from pipeline_core.cli.common import (
    EXIT_FAILED,
    add_broker_options,
    celery_settings,
    check_dags_folder,
    configure_logging,
    db_option,
    folder_option,
    seconds,
    whole_number,
)
from pipeline_core.engine.executors.celery.app import DEFAULT_QUEUE
from pipeline_core.engine.executors.celery.runtime import WorkerSettings
from pipeline_core.engine.settings import default_workers
from pipeline_core.errors import PipelineError
from pipeline_core.store import open_store


def add_commands(commands: Any) -> None:
    worker = commands.add_parser(
        "worker", help="a Celery worker that runs the tries of 'executor: celery' tasks"
    )
    folder_option(worker)
    db_option(worker)
    add_broker_options(worker, required=True)
    worker.add_argument(
        "--queues",
        default=DEFAULT_QUEUE,
        help=f"comma-separated queues to take tries from (default {DEFAULT_QUEUE}; with the "
        "engine's --queue-per-pool, pipeline-core.<pool>)",
    )
    worker.add_argument(
        "--concurrency",
        type=whole_number(1),
        default=default_workers(),
        help=f"tries run at once, each in a worker process (default {default_workers()})",
    )
    worker.add_argument(
        "--heartbeat-interval",
        type=seconds,
        default=5.0,
        help="seconds between heartbeats in the store (keep it well under the engine's "
        "--worker-lost-after)",
    )
    worker.add_argument(
        "--max-tasks-per-worker",
        type=whole_number(0),
        default=0,
        help="replace a worker process after this many tries (default 0: never)",
    )
    worker.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    worker.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO) -> int:
    from pipeline_core.engine.executors.celery.worker import WorkerProcess, run_worker

    configure_logging(args.log_level)
    if not check_dags_folder(args.dags_folder):
        return EXIT_FAILED
    queues = tuple(q.strip() for q in args.queues.split(",") if q.strip())
    if not queues:
        sys.stderr.write("error: --queues names no queue\n")
        return EXIT_FAILED
    celery = celery_settings(args)
    assert celery is not None  # --broker is required
    options = WorkerProcess(
        celery,
        WorkerSettings(
            args.dags_folder,
            heartbeat_interval=args.heartbeat_interval,
            lost_after=args.worker_lost_after,
        ),
        concurrency=args.concurrency,
        queues=queues,
        max_tasks_per_worker=args.max_tasks_per_worker,
        loglevel=args.log_level.upper(),
    )
    try:
        store = open_store(args.db)
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    try:
        return run_worker(store, options)
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    finally:
        store.close()
        logging.getLogger("pipeline_core").info("worker stopped")
