"""Every route of the v1 API, as data."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.api.app import App, AppSettings
from pipeline_core.api.cache import ViewCache
from pipeline_core.api.conditional import FinishedRuns
from pipeline_core.api.http import Request, Response, json_bytes
from pipeline_core.api.log_follow import LogFollowers
from pipeline_core.api.middleware.accounts import Gate
from pipeline_core.api.openapi.document import document
from pipeline_core.api.openapi.operation import Operation
from pipeline_core.api.router import FastHandler, Handler, Route, template
from pipeline_core.api.routes import (
    accounts,
    assets,
    backfills,
    dags,
    health,
    mapped,
    notifications,
    pools,
    run_ops,
    runs,
    stats,
    tasks,
    triggers,
    versions,
    waiting,
    webhooks,
)
from pipeline_core.api.routes import credentials as cred
from pipeline_core.api.sse.route import STREAM, EventStreams, events_route
from pipeline_core.api.types import APIServerOptions
from pipeline_core.api.ui import MAX_DEPTH, UIAssets
from pipeline_core.api.waits import RunWaiters
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord

PREFIX = "/api/v1"
DAG = f"{PREFIX}/dags/:dag_id"
RUN = f"{DAG}/runs/:run_id"
TASK = f"{RUN}/tasks/:task_id"
INSTANCE = f"{TASK}/mapped/:map_index"
BACKFILLS = f"{DAG}/backfills"
OPENAPI = Operation(
    "get_openapi",
    "health",
    "This document (OpenAPI 3.1)",
    "This document, which every answer of the API conforms to.",
    {"type": "object"},
    read=True,
    role="public",
    scope="none",
)


@dataclass(frozen=True)
class ServerParts:
    """What the routes share with the server that runs them: the views kept ready, the
    event streams, the held waits and the followed logs, all fed by the store's feed."""

    cache: ViewCache
    streams: EventStreams
    finished: FinishedRuns
    waiters: RunWaiters
    followers: LogFollowers
    #: Who may ask what (tokens, roles, DAG scope) and the audit trail.
    gate: Gate


@dataclass(frozen=True)
class Deps:
    """What handlers are made from: the server's options and the parts it shares."""

    options: APIServerOptions
    parts: ServerParts

    @property
    def store(self) -> Store:
        return self.options.store

    @property
    def on_pause(self) -> Callable[[str, bool], DagRecord] | None:
        control = self.options.control
        return control.set_paused if control is not None else None

    def kept(self, handler: Handler) -> Handler:
        """``handler`` with a finished run's answer kept (``FinishedRuns``)."""
        return self.parts.finished.wrap(handler)


@dataclass(frozen=True)
class Endpoint:
    """One operation of the API: where it is, what it declares, and how its handler (and
    its answer from memory, if it has one) is made."""

    path: str
    method: str
    operation: Operation
    make: Callable[[Deps], Handler]
    fast: Callable[[Deps], FastHandler] | None = None

    @property
    def template(self) -> str:
        return template(self.path)

    @property
    def methods(self) -> tuple[str]:
        return (self.method,)

    def route(self, deps: Deps) -> Route:
        fast = self.fast(deps) if self.fast is not None else None
        return Route(self.path, self.make(deps), [self.method], self.operation, fast)


def _on_store(make: Callable[[Store], Handler]) -> Callable[[Deps], Handler]:
    """A handler made from the store alone."""
    return lambda d: make(d.store)


def _peek(d: Deps) -> FastHandler:
    return d.parts.finished.peek


ENDPOINTS = [
    Endpoint(
        f"{PREFIX}/health",
        "GET",
        health.HEALTH,
        lambda d: health.health(d.store, d.options.clock, d.options.scheduler_expected),
    ),
    Endpoint(
        f"{PREFIX}/version",
        "GET",
        health.VERSION,
        lambda d: health.version,
        lambda d: health.version,
    ),
    Endpoint(
        f"{PREFIX}/dags",
        "GET",
        dags.LIST,
        lambda d: dags.list_dags(d.store, d.parts.cache, d.options.clock),
        lambda d: dags.listed_dags_from_memory(d.parts.cache),
    ),
    Endpoint(DAG, "GET", dags.GET, lambda d: dags.get_dag(d.store, d.options.clock)),
    Endpoint(
        DAG, "PATCH", dags.PATCH, lambda d: dags.patch_dag(d.store, d.on_pause, d.options.clock)
    ),
    Endpoint(f"{DAG}/runs", "GET", runs.LIST, lambda d: runs.list_runs(d.store)),
    Endpoint(
        f"{DAG}/runs",
        "POST",
        triggers.TRIGGER,
        lambda d: triggers.trigger_run(d.store, d.options.control, d.options.idempotency_ttl),
    ),
    Endpoint(RUN, "GET", runs.GET, lambda d: d.kept(runs.get_run(d.store)), _peek),
    Endpoint(RUN, "DELETE", runs.CANCEL, lambda d: runs.cancel_run(d.store, d.options.control)),
    Endpoint(
        RUN, "PATCH", run_ops.PATCH_RUN, lambda d: run_ops.patch_run(d.store, d.options.control)
    ),
    Endpoint(
        f"{RUN}/clear",
        "POST",
        run_ops.CLEAR,
        lambda d: run_ops.clear_run(d.store, d.options.control),
    ),
    Endpoint(
        f"{RUN}/retry", "POST", runs.RETRY, lambda d: runs.retry_run(d.store, d.options.control)
    ),
    Endpoint(
        f"{RUN}/wait",
        "GET",
        waiting.WAIT,
        lambda d: waiting.wait_run(d.store, d.parts.waiters),
    ),
    Endpoint(f"{RUN}/tasks", "GET", tasks.LIST, lambda d: d.kept(tasks.list_tasks(d.store)), _peek),
    Endpoint(TASK, "GET", tasks.GET, lambda d: d.kept(tasks.get_task(d.store)), _peek),
    Endpoint(
        TASK,
        "PATCH",
        run_ops.PATCH_TASK,
        lambda d: run_ops.patch_task(d.store, d.options.control),
    ),
    Endpoint(f"{TASK}/xcom", "GET", tasks.XCOM, lambda d: d.kept(tasks.get_xcom(d.store)), _peek),
    Endpoint(
        f"{TASK}/mapped",
        "GET",
        mapped.LIST,
        lambda d: d.kept(mapped.list_instances(d.store)),
        _peek,
    ),
    Endpoint(INSTANCE, "GET", mapped.GET, lambda d: d.kept(tasks.get_task(d.store)), _peek),
    Endpoint(
        INSTANCE, "PATCH", mapped.PATCH, lambda d: run_ops.patch_task(d.store, d.options.control)
    ),
    Endpoint(
        f"{INSTANCE}/clear",
        "POST",
        mapped.CLEAR,
        lambda d: mapped.clear_instance(d.store, d.options.control),
    ),
    Endpoint(
        f"{INSTANCE}/xcom", "GET", mapped.XCOM, lambda d: d.kept(tasks.get_xcom(d.store)), _peek
    ),
    Endpoint(
        f"{INSTANCE}/logs", "GET", mapped.LOG, lambda d: tasks.get_logs(d.store, d.parts.followers)
    ),
    Endpoint(
        f"{TASK}/logs", "GET", tasks.LOG, lambda d: tasks.get_logs(d.store, d.parts.followers)
    ),
    Endpoint(f"{DAG}/stats", "GET", stats.STATS, lambda d: stats.dag_stats(d.store)),
    Endpoint(f"{DAG}/grid", "GET", stats.GRID, lambda d: stats.dag_grid(d.store)),
    Endpoint(f"{DAG}/versions", "GET", versions.LIST, lambda d: versions.list_versions(d.store)),
    Endpoint(
        f"{DAG}/versions/:version", "GET", versions.GET, lambda d: versions.get_version(d.store)
    ),
    Endpoint(BACKFILLS, "GET", backfills.LIST, lambda d: backfills.list_backfills(d.store)),
    Endpoint(
        BACKFILLS,
        "POST",
        backfills.CREATE,
        lambda d: backfills.create_backfill(d.store, d.options.max_backfill_runs),
    ),
    Endpoint(
        f"{BACKFILLS}/:backfill_id",
        "GET",
        backfills.GET,
        lambda d: backfills.get_backfill(d.store),
    ),
    Endpoint(
        f"{BACKFILLS}/:backfill_id",
        "DELETE",
        backfills.CANCEL,
        lambda d: backfills.cancel_backfill(d.store, d.options.control),
    ),
    Endpoint(f"{PREFIX}/metrics", "GET", stats.METRICS, lambda d: stats.metrics(d.options.metrics)),
    Endpoint(
        f"{PREFIX}/metrics/prometheus",
        "GET",
        stats.PROMETHEUS,
        lambda d: stats.metrics(d.options.metrics, "prometheus"),
    ),
    Endpoint(
        f"{PREFIX}/metrics/openmetrics",
        "GET",
        stats.OPENMETRICS,
        lambda d: stats.metrics(d.options.metrics, "openmetrics"),
    ),
    Endpoint(f"{PREFIX}/assets", "GET", assets.LIST, lambda d: assets.list_assets(d.store)),
    *(
        Endpoint(path, method, operation, _on_store(make))
        for path, method, operation, make in (
            (f"{PREFIX}/variables", "GET", cred.LIST_VARIABLES, cred.list_variables),
            (f"{PREFIX}/variables/:key", "GET", cred.GET_VARIABLE, cred.get_variable),
            (f"{PREFIX}/variables/:key", "PUT", cred.PUT_VARIABLE, cred.put_variable),
            (f"{PREFIX}/variables/:key", "DELETE", cred.DELETE_VARIABLE, cred.delete_variable),
            (f"{PREFIX}/connections", "GET", cred.LIST_CONNECTIONS, cred.list_connections),
            (f"{PREFIX}/connections/:conn_id", "GET", cred.GET_CONNECTION, cred.get_connection),
            (f"{PREFIX}/connections/:conn_id", "PUT", cred.PUT_CONNECTION, cred.put_connection),
            (
                f"{PREFIX}/connections/:conn_id",
                "DELETE",
                cred.DELETE_CONNECTION,
                cred.delete_connection,
            ),
        )
    ),
    Endpoint(
        f"{PREFIX}/webhooks/:dag_id/:name",
        "POST",
        webhooks.DELIVER,
        lambda d: webhooks.deliver(
            d.store, d.options.control, webhooks.Buckets(d.options.webhook_rate)
        ),
    ),
    Endpoint(
        f"{PREFIX}/assets/events", "GET", assets.EVENTS, lambda d: assets.list_events(d.store)
    ),
    Endpoint(f"{PREFIX}/assets/events", "POST", assets.POST, lambda d: assets.post_event(d.store)),
    Endpoint(
        f"{PREFIX}/notifications",
        "GET",
        notifications.LIST,
        lambda d: notifications.list_notifications(d.store),
    ),
    Endpoint(
        f"{PREFIX}/notifications/:notification_id",
        "GET",
        notifications.GET,
        lambda d: notifications.get_notification(d.store),
    ),
    Endpoint(
        f"{PREFIX}/notifications/:notification_id/redeliver",
        "POST",
        notifications.REDELIVER,
        lambda d: notifications.redeliver(d.store),
    ),
    Endpoint(f"{PREFIX}/pools", "GET", pools.LIST, lambda d: pools.list_pools(d.store)),
    Endpoint(f"{PREFIX}/pools", "POST", pools.CREATE, lambda d: pools.create_pool(d.store)),
    Endpoint(f"{PREFIX}/pools/:name", "PATCH", pools.PATCH, lambda d: pools.patch_pool(d.store)),
    Endpoint(f"{PREFIX}/pools/:name", "DELETE", pools.DELETE, lambda d: pools.delete_pool(d.store)),
    Endpoint(
        f"{PREFIX}/import-errors", "GET", dags.IMPORT_ERRORS, lambda d: dags.import_errors(d.store)
    ),
    Endpoint(f"{PREFIX}/tokens", "GET", accounts.LIST_TOKENS, _on_store(accounts.list_tokens)),
    Endpoint(
        f"{PREFIX}/tokens",
        "POST",
        accounts.CREATE_TOKEN,
        lambda d: accounts.create_token(d.store, d.parts.gate, d.options.clock),
    ),
    Endpoint(
        f"{PREFIX}/tokens/:name",
        "DELETE",
        accounts.REVOKE_TOKEN,
        lambda d: accounts.revoke_token(d.store, d.parts.gate),
    ),
    Endpoint(f"{PREFIX}/audit", "GET", accounts.LIST_AUDIT, _on_store(accounts.list_audit)),
    Endpoint(f"{PREFIX}/whoami", "GET", accounts.WHOAMI, lambda d: accounts.whoami),
    Endpoint(f"{PREFIX}/openapi.json", "GET", OPENAPI, lambda d: _openapi, lambda d: _openapi),
    Endpoint(f"{PREFIX}/events", "GET", STREAM, lambda d: events_route(d.store, d.parts.streams)),
]


def build_routes(options: APIServerOptions, parts: ServerParts) -> list[Route]:
    deps = Deps(options, parts)
    return [*(endpoint.route(deps) for endpoint in ENDPOINTS), *ui_routes(UIAssets())]


def ui_routes(assets: UIAssets) -> list[Route]:
    """``/`` and every depth of ``/ui/...`` (a view of the page, or one of its files)."""
    paths = ["/", "/ui", *("/ui" + "/:p" * depth for depth in range(1, MAX_DEPTH + 1))]
    return [Route(path, assets.answer, fast=assets.answer) for path in paths]


def _openapi(request: Request) -> Response:
    return Response(200, _document_bytes())


@functools.cache
def api_document() -> dict[str, Any]:
    """The OpenAPI document, written from ``ENDPOINTS``."""
    return document(ENDPOINTS)


@functools.cache
def _document_bytes() -> bytes:
    return json_bytes(api_document())


def build_app(options: APIServerOptions, parts: ServerParts) -> App:
    settings = AppSettings(
        options.cors_origins,
        options.auth_token,
        options.log_json,
        loopback_hosts_only=is_loopback(options.host),
        allowed_hosts=tuple(options.allowed_hosts),
        gate=parts.gate,
    )
    return App(build_routes(options, parts), settings)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address or name) is on the loopback interface only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"
