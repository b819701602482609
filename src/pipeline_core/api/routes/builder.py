"""Every route of the v1 API, as data."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from pipeline_core.api.app import App, AppSettings
from pipeline_core.api.cache import ViewCache
from pipeline_core.api.conditional import FinishedRuns
from pipeline_core.api.http import Request, Response, json_bytes
from pipeline_core.api.log_follow import LogFollowers
from pipeline_core.api.openapi.document import document
from pipeline_core.api.router import Route
from pipeline_core.api.routes import (
    backfills,
    dags,
    health,
    pools,
    run_ops,
    runs,
    stats,
    tasks,
    triggers,
    waiting,
)
from pipeline_core.api.sse.route import EventStreams, events_route
from pipeline_core.api.types import APIServerOptions
from pipeline_core.api.ui import MAX_DEPTH, UIAssets
from pipeline_core.api.waits import RunWaiters

PREFIX = "/api/v1"
RUN = f"{PREFIX}/dags/:dag_id/runs/:run_id"
TASK = f"{RUN}/tasks/:task_id"
BACKFILLS = f"{PREFIX}/dags/:dag_id/backfills"


@dataclass(frozen=True)
class ServerParts:
    """What the routes share with the server that runs them: the views kept ready, the
    event streams, the held waits and the followed logs, all fed by the store's feed."""

    cache: ViewCache
    streams: EventStreams
    finished: FinishedRuns
    waiters: RunWaiters
    followers: LogFollowers


def build_routes(options: APIServerOptions, parts: ServerParts) -> list[Route]:
    store, control = options.store, options.control
    cache, streams, finished = parts.cache, parts.streams, parts.finished
    waiters, followers = parts.waiters, parts.followers
    on_pause = control.set_paused if control is not None else None
    kept = finished.wrap
    return [
        Route(f"{PREFIX}/health", health.health(store, options.clock, options.scheduler_expected)),
        Route(f"{PREFIX}/version", health.version, fast=health.version),
        Route(
            f"{PREFIX}/dags",
            dags.list_dags(store, cache, options.clock),
            fast=dags.listed_dags_from_memory(cache),
        ),
        Route(f"{PREFIX}/dags/:dag_id", dags.get_dag(store, options.clock)),
        Route(f"{PREFIX}/dags/:dag_id", dags.patch_dag(store, on_pause, options.clock), ["PATCH"]),
        Route(f"{PREFIX}/dags/:dag_id/runs", runs.list_runs(store)),
        Route(
            f"{PREFIX}/dags/:dag_id/runs",
            triggers.trigger_run(store, control, options.idempotency_ttl),
            ["POST"],
        ),
        Route(RUN, kept(runs.get_run(store)), fast=finished.peek),
        Route(RUN, runs.cancel_run(store, control), ["DELETE"]),
        Route(RUN, run_ops.patch_run(store, control), ["PATCH"]),
        Route(f"{RUN}/clear", run_ops.clear_run(store, control), ["POST"]),
        Route(f"{RUN}/retry", runs.retry_run(store, control), ["POST"]),
        Route(f"{RUN}/wait", waiting.wait_run(store, waiters)),
        Route(f"{RUN}/tasks", kept(tasks.list_tasks(store)), fast=finished.peek),
        Route(TASK, kept(tasks.get_task(store)), fast=finished.peek),
        Route(TASK, run_ops.patch_task(store, control), ["PATCH"]),
        Route(f"{TASK}/xcom", kept(tasks.get_xcom(store)), fast=finished.peek),
        Route(f"{TASK}/logs", tasks.get_logs(store, followers)),
        Route(f"{PREFIX}/dags/:dag_id/stats", stats.dag_stats(store)),
        Route(f"{BACKFILLS}", backfills.list_backfills(store)),
        Route(
            f"{BACKFILLS}", backfills.create_backfill(store, options.max_backfill_runs), ["POST"]
        ),
        Route(f"{BACKFILLS}/:backfill_id", backfills.get_backfill(store)),
        Route(f"{BACKFILLS}/:backfill_id", backfills.cancel_backfill(store, control), ["DELETE"]),
        Route(f"{PREFIX}/metrics", stats.metrics(options.metrics)),
        Route(f"{PREFIX}/pools", pools.list_pools(store)),
        Route(f"{PREFIX}/pools", pools.create_pool(store), ["POST"]),
        Route(f"{PREFIX}/pools/:name", pools.patch_pool(store), ["PATCH"]),
        Route(f"{PREFIX}/pools/:name", pools.delete_pool(store), ["DELETE"]),
        Route(f"{PREFIX}/import-errors", dags.import_errors(store)),
        Route(f"{PREFIX}/openapi.json", _openapi, fast=_openapi),
        Route(f"{PREFIX}/events", events_route(store, streams)),
        *ui_routes(UIAssets()),
    ]


def ui_routes(assets: UIAssets) -> list[Route]:
    """``/`` and every depth of ``/ui/...`` (a view of the page, or one of its files)."""
    paths = ["/", "/ui", *("/ui" + "/:p" * depth for depth in range(1, MAX_DEPTH + 1))]
    return [Route(path, assets.answer, fast=assets.answer) for path in paths]


def _openapi(request: Request) -> Response:
    return Response(200, _document_bytes())


@functools.cache
def _document_bytes() -> bytes:
    return json_bytes(document())


def build_app(options: APIServerOptions, parts: ServerParts) -> App:
    settings = AppSettings(
        options.cors_origins,
        options.auth_token,
        options.log_json,
        loopback_hosts_only=is_loopback(options.host),
        allowed_hosts=tuple(options.allowed_hosts),
    )
    return App(build_routes(options, parts), settings)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address or name) is on the loopback interface only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"
