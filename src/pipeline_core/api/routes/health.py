"""``/health`` and ``/version``."""

from __future__ import annotations

import platform
from collections.abc import Callable
from datetime import datetime

from pipeline_core._version import __version__
from pipeline_core.api.http import Request, Response, envelope
from pipeline_core.api.openapi.operation import Answer, Operation
from pipeline_core.api.openapi.parts import envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.clock import Clock
from pipeline_core.errors import PipelineError
from pipeline_core.model import iso
from pipeline_core.store.base import Store
from pipeline_core.store.types import Heartbeat, TryClaim

STALE_AFTER_S = 30.0

HEALTH = Operation(
    "get_health",
    "health",
    "Health of the store and the scheduler",
    "The store's and the scheduler's state; 503 while the store is unreachable. Public even "
    "when a token is configured.",
    envelope_of(ref("Health")),
    read=True,
    answers=[Answer("503", "the store is unreachable", envelope_of(ref("Health")))],
    role="public",
    scope="none",
)
VERSION = Operation(
    "get_version",
    "health",
    "API and package versions",
    "The API version, the package version and the Python version. Public.",
    envelope_of(ref("Version")),
    read=True,
    role="public",
    scope="none",
)


def health(store: Store, clock: Clock, scheduler_expected: bool) -> Callable[[Request], Response]:
    started = clock.monotonic()

    def handle(request: Request) -> Response:
        try:
            store.ping()
            every = store.heartbeats.list_heartbeats()
            claims = store.tries.list_claims() if any(b.kind == "worker" for b in every) else []
            store_status = "ok"
        except PipelineError:
            every, claims, store_status = [], [], "error"
        beats = [b for b in every if b.kind == "scheduler"]
        now = clock.now()
        reasons = []
        if store_status == "ok" and scheduler_expected and _no_dags(store):
            reasons.append("no DAGs are loaded: the DAGs folder has no DAG files, or none loads")
        latest = max((b.last_heartbeat for b in beats), default=None)
        age = (now - latest).total_seconds() if latest else None
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
            "instances": [_instance(beat, now) for beat in every if beat.kind != "worker"],
            "workers": [_worker(beat, claims, now) for beat in every if beat.kind == "worker"],
            "reasons": reasons,
            "uptime_s": round(clock.monotonic() - started, 3),
        }
        return envelope(data, status=503 if status == "unhealthy" else 200)

    return handle


def _instance(beat: Heartbeat, now: datetime) -> dict[str, object]:
    """One engine, scheduler or standby scheduler, and whether it is alive: ``active`` (an
    engine or scheduler heartbeating), ``standby`` (waiting to take over) or ``stopped``."""
    age = (now - beat.last_heartbeat).total_seconds()
    alive = "standby" if beat.kind == "standby" else "active"
    role = "stopped" if age > STALE_AFTER_S else alive
    return {
        "id": beat.component_id,
        "kind": beat.kind,
        "role": role,
        "hostname": beat.hostname,
        "pid": beat.pid,
        "last_heartbeat": iso(beat.last_heartbeat),
        "heartbeat_age_s": round(age, 3),
    }


def _worker(beat: Heartbeat, claims: list[TryClaim], now: datetime) -> dict[str, object]:
    """A Celery worker (``pipeline-core worker``) and the tries it runs now."""
    running = [
        {
            "dag_id": claim.key.dag_id,
            "run_id": claim.key.run_id,
            "task_id": claim.key.task_id,
            "try_number": claim.try_number,
        }
        for claim in claims
        if claim.worker_id == beat.component_id and claim.reported_at is None
    ]
    return {**_instance(beat, now), "running": running}


def _no_dags(store: Store) -> bool:
    try:
        return store.dags.list_dags(is_active=True, limit=1).total == 0
    except PipelineError:
        return False


def version(request: Request) -> Response:
    return envelope(
        {"api_version": "v1", "version": __version__, "python_version": platform.python_version()}
    )
