"""Every route of the v1 API, as data."""

from __future__ import annotations

import time
from typing import Any

from pipeline_core.api.app import App, AppSettings
from pipeline_core.api.router import Route
from pipeline_core.api.routes import dags, health

PREFIX = "/api/v1"


def build_app(options: Any) -> App:
    store, control = options.store, options.control
    started = time.monotonic()
    on_pause = control.set_paused if control is not None else None
    routes = [
        Route(f"{PREFIX}/health", health.health(store, started, options.scheduler_expected)),
        Route(f"{PREFIX}/version", health.version),
        Route(f"{PREFIX}/dags", dags.list_dags(store)),
        Route(f"{PREFIX}/dags/:dag_id", dags.get_dag(store)),
        Route(f"{PREFIX}/dags/:dag_id", dags.patch_dag(store, on_pause), ["PATCH"]),
    ]
    settings = AppSettings(options.cors_origins, options.auth_token, options.log_json)
    return App(routes, settings)
