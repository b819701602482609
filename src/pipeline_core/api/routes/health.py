"""``/health`` and ``/version``."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

from pipeline_core._version import __version__
from pipeline_core.api.http import Request, Response, envelope
from pipeline_core.errors import PipelineError
from pipeline_core.model import iso, utcnow
from pipeline_core.store.base import Store

STALE_AFTER_S = 30.0


def health(store: Store, started: float, scheduler_expected: bool) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        try:
            store.ping()
            beats = store.list_heartbeats("scheduler")
            store_status = "ok"
        except PipelineError:
            beats, store_status = [], "error"
        reasons = []
        if store_status == "ok" and scheduler_expected and _no_dags(store):
            reasons.append("no DAGs are loaded: the DAGs folder has no DAG files, or none loads")
        latest = max((b.last_heartbeat for b in beats), default=None)
        age = (utcnow() - latest).total_seconds() if latest else None
        if latest is None:
            scheduler_status = "stopped" if scheduler_expected else "absent"
        else:
            scheduler_status = "running" if age is not None and age <= STALE_AFTER_S else "stopped"
        if store_status != "ok":
            status = "unhealthy"
        elif scheduler_status == "stopped" and (scheduler_expected or latest is not None):
            status = "degraded"
            reasons.append("the scheduler's heartbeat has stopped")
        elif reasons:
            status = "degraded"
        else:
            status = "healthy"
        data = {
            "status": status,
            "scheduler": {
                "status": scheduler_status,
                "last_heartbeat": iso(latest),
                "heartbeat_age_s": round(age, 3) if age is not None else None,
            },
            "store": {"status": store_status},
            "reasons": reasons,
            "uptime_s": round(time.monotonic() - started, 3),
        }
        return envelope(data, status=503 if status == "unhealthy" else 200)

    return handle


def _no_dags(store: Store) -> bool:
    try:
        return store.list_dags(is_active=True, limit=1).total == 0
    except PipelineError:
        return False


def version(request: Request) -> Response:
    return envelope(
        {"api_version": "v1", "version": __version__, "python_version": platform.python_version()}
    )
