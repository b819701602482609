"""The commands that run until stopped: ``pipeline-core scheduler`` (scheduler + engine),
``serve`` (engine, scheduler and REST API in one process) and ``api`` (the API alone, beside a
scheduler on the same database)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from dataclasses import replace
from typing import Any, Literal, TextIO

from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    add_engine_options,
    check_dags_folder,
    configure_logging,
    db_option,
    engine_executors,
    folder_option,
    folder_watch_options,
    parsed_cache,
    seconds,
    start_engine,
    stop_on_signals,
    wait_until_set,
    whole_number,
)
from pipeline_core.cli.db import add_retention_option, start_retention
from pipeline_core.cli.delivery import add_delivery_options, start_dispatcher
from pipeline_core.cli.standby import wait_to_be_active
from pipeline_core.engine.remote import RemoteControl
from pipeline_core.engine.telemetry import RunMetrics
from pipeline_core.errors import PipelineError
from pipeline_core.metrics import MetricsCollector
from pipeline_core.scheduler.scheduler import Scheduler, SchedulerSettings
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.store import Store, open_store


def add_commands(commands: Any) -> None:
    """``scheduler``, ``serve`` and ``api``: the commands that run until stopped."""
    scheduler = commands.add_parser(
        "scheduler", help="run the scheduler and engine in the foreground"
    )
    folder_option(scheduler)
    db_option(scheduler)
    folder_watch_options(scheduler)
    scheduler.add_argument(
        "--grace", type=float, default=30.0, help="seconds to let tasks finish on stop"
    )
    scheduler.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )
    add_engine_options(scheduler)
    add_delivery_options(scheduler)
    add_retention_option(scheduler)
    scheduler.set_defaults(handler=run_scheduler)
    serve_cmd = commands.add_parser("serve", help="engine, scheduler and REST API in one process")
    folder_option(serve_cmd)
    db_option(serve_cmd)
    add_server_options(serve_cmd)
    serve_cmd.add_argument(
        "--no-scheduler", action="store_true", help="run DAGs only when triggered"
    )
    folder_watch_options(serve_cmd)
    serve_cmd.add_argument("--grace", type=float, default=30.0)
    serve_cmd.add_argument(
        "--event-streams",
        choices=("process", "thread"),
        default="process",
        help="write live event streams from a process of their own (default; keeps the "
        "fan-out off the engine) or from a thread of this one",
    )
    add_engine_options(serve_cmd)
    add_delivery_options(serve_cmd)
    add_retention_option(serve_cmd)
    serve_cmd.set_defaults(handler=serve)
    api_cmd = commands.add_parser(
        "api", help="the REST API alone, beside 'pipeline-core scheduler'"
    )
    db_option(api_cmd)
    add_server_options(api_cmd)
    api_cmd.set_defaults(handler=api)


def run_scheduler(args: argparse.Namespace, out: TextIO) -> int:
    """Scheduler + engine in the foreground until SIGINT or SIGTERM."""
    configure_logging(args.log_level)
    log = logging.getLogger("pipeline_core")
    stop = stop_on_signals()
    if not check_dags_folder(args.dags_folder):
        return EXIT_FAILED
    try:
        store = open_store(args.db)
        store.credentials.check_key()  # sealed secrets and no key to open them: say so now
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return EXIT_FAILED
    lost = threading.Event()
    try:
        claim = wait_to_be_active(store, stop, lost)
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        store.close()
        return EXIT_FAILED
    if claim is None:  # stopped while standing by
        store.close()
        return EXIT_OK
    engine = start_engine(store, args, sole=True)
    if engine is None:
        claim.release()
        store.close()
        return EXIT_FAILED
    settings = SchedulerSettings(
        rescan_interval=args.rescan_interval,
        watch=not args.no_watch,
        executors=engine_executors(args),
        parsed_cache=parsed_cache(args),
    )
    scheduler = Scheduler(store, engine, args.dags_folder, settings=settings).start()
    dispatcher = start_dispatcher(store, args, None)
    retention = start_retention(store, args)
    log.info(
        "scheduler running: %d DAG(s) from %s, database %s",
        len(scheduler.dags),
        args.dags_folder,
        store.url,
    )
    wait_until_set(stop)
    grace = 0.0 if lost.is_set() else args.grace
    log.info("stopping: waiting up to %ss for running tasks", grace)
    scheduler.stop()
    engine.stop(grace=grace)
    dispatcher.stop()
    if retention is not None:
        retention.stop()
    claim.release()
    store.close()
    log.info("stopped")
    return EXIT_FAILED if lost.is_set() else EXIT_OK


log = logging.getLogger("pipeline_core")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("PIPELINE_CORE_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PIPELINE_CORE_PORT", "8080"))
    )
    parser.add_argument(
        "--auth-token",
        default=os.environ.get("PIPELINE_CORE_API_TOKEN"),
        help="an admin token every request must bear (env PIPELINE_CORE_API_TOKEN); named "
        "tokens with roles: pipeline-core tokens create",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="allowed browser origin (repeatable, '*' for any; default: localhost origins)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="accept this Host besides the loopback names when listening on loopback "
        "(repeatable; other hosts get 421, against DNS rebinding)",
    )
    parser.add_argument(
        "--max-body-bytes", type=whole_number(1), default=1024 * 1024, help="request body cap"
    )
    parser.add_argument(
        "--max-connections",
        type=whole_number(1),
        default=None,
        help="open connections at most; above it the longest-idle one is closed, or the "
        "newcomer gets 503 (default: half the descriptor limit)",
    )
    parser.add_argument(
        "--head-timeout", type=seconds, default=10.0, help="seconds for a whole request head"
    )
    parser.add_argument(
        "--body-timeout", type=seconds, default=30.0, help="seconds for a whole request body"
    )
    parser.add_argument(
        "--idle-timeout",
        type=seconds,
        default=30.0,
        help="seconds a keep-alive connection may wait for its next request",
    )
    parser.add_argument(
        "--handler-threads",
        type=whole_number(1),
        default=16,
        help="threads that run route handlers (connections cost none)",
    )
    parser.add_argument(
        "--sse-keepalive",
        type=float,
        default=15.0,
        help="seconds between keepalive comments on an idle event stream",
    )
    parser.add_argument(
        "--idempotency-ttl",
        type=seconds,
        default=24 * 3600.0,
        help="seconds a trigger's idempotency key is held by its run (default 86400)",
    )
    parser.add_argument(
        "--max-backfill-runs",
        type=whole_number(1),
        default=1000,
        help="fire times one backfill may cover at most (default 1000)",
    )
    parser.add_argument(
        "--webhook-rate",
        type=whole_number(1),
        default=100,
        help="deliveries a second each inbound webhook takes, in bursts of as many; more are "
        "answered 429 with Retry-After (default 100)",
    )
    parser.add_argument(
        "--max-log-followers",
        type=whole_number(1),
        default=64,
        help="task logs followed at once (?follow=true), a thread each (default 64)",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )


def serve(args: argparse.Namespace, out: TextIO) -> int:
    """Engine, scheduler (unless ``--no-scheduler``) and API until SIGINT/SIGTERM."""
    store, stop = _prepare(args)
    if store is None or not check_dags_folder(args.dags_folder):
        return _failed(store)
    metrics = MetricsCollector()
    # The port first: a server that cannot listen must not start running DAGs.
    server = _bind_api(args, store, metrics, scheduler_expected=not args.no_scheduler)
    if server is None:
        return _failed(store)
    engine = start_engine(store, args, metrics=metrics)
    if engine is None:
        server.stop()
        return _failed(store)
    scheduler = None
    if args.no_scheduler:
        sync = DagSync(store, args.dags_folder, executors=engine_executors(args))
        engine.set_dags(sync.refresh())
    else:
        settings = SchedulerSettings(
            rescan_interval=args.rescan_interval,
            watch=not args.no_watch,
            executors=engine_executors(args),
            parsed_cache=parsed_cache(args),
        )
        scheduler = Scheduler(
            store, engine, args.dags_folder, metrics=metrics, settings=settings
        ).start()
    server.options = replace(server.options, control=engine)
    dispatcher = start_dispatcher(store, args, metrics, server.port)
    retention = start_retention(store, args) if scheduler is not None else None
    _serve_api(server, args)
    wait_until_set(stop)
    log.info("stopping")
    server.stop()
    if scheduler is not None:
        scheduler.stop()
    engine.stop(grace=args.grace)
    dispatcher.stop()
    if retention is not None:
        retention.stop()
    store.close()
    log.info("stopped")
    return 0


def api(args: argparse.Namespace, out: TextIO) -> int:
    """The API alone: control requests go through the store to a scheduler elsewhere."""
    store, stop = _prepare(args)
    if store is None:
        return 1
    # Run and task counters follow from the event log, so every API server shows them.
    metrics = MetricsCollector()
    telemetry = RunMetrics(metrics)
    server = _bind_api(args, store, metrics, scheduler_expected=True, remote=True)
    if server is None:
        return _failed(store)
    store.feed.subscribe(telemetry, other_processes=True)
    server.options = replace(server.options, control=RemoteControl(store))
    _serve_api(server, args)
    wait_until_set(stop)
    server.stop()
    store.feed.unsubscribe(telemetry)
    store.close()
    return 0


def _failed(store: Store | None) -> int:
    if store is not None:
        store.close()
    return 1


def _bind_api(
    args: argparse.Namespace,
    store: Store,
    metrics: MetricsCollector | None,
    *,
    scheduler_expected: bool,
    remote: bool = False,
) -> APIServer | None:
    """The API server with its port taken (``None``, reason on stderr, if it cannot be).
    ``remote``: the engine runs in another process, so follow the store's event log."""
    options = APIServerOptions(
        store=store,
        host=args.host,
        port=args.port,
        metrics=metrics,
        cors_origins=tuple(args.cors_origin),
        allowed_hosts=tuple(args.allowed_host),
        auth_token=args.auth_token or None,
        max_body_bytes=args.max_body_bytes,
        max_connections=args.max_connections,
        head_timeout=args.head_timeout,
        body_timeout=args.body_timeout,
        idle_timeout=args.idle_timeout,
        handler_threads=args.handler_threads,
        sse_keepalive=args.sse_keepalive,
        idempotency_ttl=args.idempotency_ttl,
        max_backfill_runs=args.max_backfill_runs,
        webhook_rate=float(args.webhook_rate),
        max_log_followers=args.max_log_followers,
        log_json=args.log_format == "json",
        scheduler_expected=scheduler_expected,
        follow_other_processes=remote,
        event_streams=_event_streams(args),
        database_url=args.db,
    )
    try:
        return APIServer(options).bind()
    except OSError as exc:
        sys.stderr.write(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}\n")
        return None


def _serve_api(server: APIServer, args: argparse.Namespace) -> None:
    server.start()
    host = f"[{args.host}]" if ":" in args.host else args.host
    log.info("pipeline-core API on http://%s:%d/api/v1", host, server.port)
    asks = args.auth_token or server.options.store.accounts.has_tokens()
    if args.host not in ("127.0.0.1", "localhost", "::1") and not asks:
        log.warning(
            "listening on %s without tokens (--auth-token, or pipeline-core tokens create): "
            "anyone who can reach it can drive it",
            args.host,
        )


def _event_streams(args: argparse.Namespace) -> Literal["thread", "process"]:
    """A stream process only helps beside an engine, and needs a database it can open too."""
    wanted = getattr(args, "event_streams", "thread")
    in_memory = args.db.startswith("memory") or ":memory:" in args.db
    return "process" if wanted == "process" and not in_memory else "thread"


def _prepare(args: argparse.Namespace) -> tuple[Store | None, threading.Event]:
    """Logging, signal handling and the store every long-running command needs."""
    configure_logging(args.log_level)
    stop = stop_on_signals()
    try:
        # A connection for each handler thread, and a few for the engine, scheduler and feed.
        store = open_store(args.db, connections=args.handler_threads + 4)
        store.credentials.check_key()  # sealed secrets and no key to open them: say so now
        return store, stop
    except PipelineError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return None, stop
