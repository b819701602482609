"""``POST /api/v1/webhooks/:dag_id/:name``: a signed delivery starts a run of the DAG.

Authenticated by its signature (HMAC-SHA256 of the raw body with the webhook's secret, read
from the environment when the delivery comes; compared in constant time), not by the API
token. A delivery id (the webhook's ``idempotency_header``) makes repeats answer the first
run: the run is created with it as its idempotency key, in the run's own transaction, so a
delivery starts one run however often it comes. Each webhook takes at most ``rate``
deliveries a second (a burst of as many); more are answered 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from pipeline_core.api.http import HTTPError, Request, Response, bad_request, envelope
from pipeline_core.api.openapi.operation import Answer, Operation, Param
from pipeline_core.api.openapi.parts import ID, envelope_of
from pipeline_core.api.openapi.schemas import obj, ref
from pipeline_core.api.routes.runs import control_of
from pipeline_core.api.serialize import run_dict
from pipeline_core.dag.webhooks import DeliveryRefused, Webhook
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import IdempotencyKey, TriggerRequest
from pipeline_core.store.base import Store

NAME = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}
#: Deliveries a second each webhook takes by default (and its burst).
DEFAULT_RATE = 100.0
KEY_TTL = 24 * 3600.0
DELIVERY = obj(["run"], run={"oneOf": [{"type": "null"}, ref("Run")]},
               skipped={"type": "string", "description": "why no run (when was false)"},
               replayed={"type": "boolean"})  # fmt: skip

DELIVER = Operation(
    "deliver_webhook",
    "webhooks",
    "Deliver a webhook",
    "A delivery the DAG's webhook `name` declares: its raw body signed with the webhook's "
    "secret (`<signature_header>: sha256=<hex of HMAC-SHA256>`, as GitHub signs), a JSON "
    "body. A valid one starts a run (202, Location) whose conf the webhook's templates make "
    "from the payload; its delivery id header makes a repeat answer the first run (200); "
    "`when` false answers 200 with no run; a bad or missing signature is a 401, a payload "
    "without a field a template names a 422, more deliveries than the webhook's rate a 429.",
    envelope_of(DELIVERY),
    (Param("dag_id", "path", ID), Param("name", "path", NAME)),
    answers=[
        Answer(
            "202",
            "a run was started",
            envelope_of(DELIVERY),
            headers={"Location": {"schema": {"type": "string"}, "required": True}},
        ),
        Answer("422", "the payload lacks a field a template names"),
        Answer(
            "429",
            "more deliveries than the webhook's rate",
            headers={"Retry-After": {"schema": {"type": "integer"}, "required": True}},
        ),
    ],
    role="public",
)


class Buckets:
    """A token bucket per webhook: ``rate`` a second, as many at once."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self._held: dict[tuple[str, str], tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: tuple[str, str]) -> float:
        """0 when a delivery may pass now, else the seconds until one may."""
        with self._lock:
            now = self.clock()
            tokens, then = self._held.get(key, (self.rate, now))
            tokens = min(self.rate, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._held[key] = (tokens - 1, now)
                return 0.0
            self._held[key] = (tokens, now)
            return (1 - tokens) / self.rate


def deliver(
    store: Store, control: Control | None, buckets: Buckets
) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        dag_id, name = request.params["dag_id"], request.params["name"]
        webhook = _webhook(store, dag_id, name)
        wait = buckets.take((dag_id, name))
        if wait:
            raise HTTPError(429, "too_many_requests", f"webhook '{name}' of DAG '{dag_id}' takes "
                            f"{buckets.rate:g} deliveries a second",
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip
        try:
            webhook.verify(request.body, request.header(webhook.signature_header), os.environ)
        except DeliveryRefused as exc:
            raise HTTPError(401, "unauthorized", str(exc)) from None
        except KeyError as exc:
            raise HTTPError(503, "unavailable", f"the secret of webhook '{name}' is not set in "
                            f"this server's environment ({exc.args[0]})") from None  # fmt: skip
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise bad_request("the delivery's body is not JSON") from None
        try:
            conf = webhook.conf_of(payload, dag_id)
        except DeliveryRefused as exc:
            raise HTTPError(422, "unprocessable", str(exc)) from None
        if conf is None:
            return envelope({"run": None, "skipped": f"when is false: {webhook.when}"})
        return _start(store, control, request, webhook, dag_id, conf)

    return handle


def _webhook(store: Store, dag_id: str, name: str) -> Webhook:
    definition = store.dags.get_dag(dag_id).definition or {}
    for data in definition.get("webhooks", ()):
        if data.get("name") == name:
            return Webhook.from_dict(data)
    raise NotFound(f"DAG '{dag_id}' has no webhook '{name}'")


def _start(
    store: Store, control: Control | None, request: Request, webhook: Webhook, dag_id: str,
    conf: dict[str, Any],
) -> Response:  # fmt: skip
    delivery = request.header(webhook.idempotency_header) if webhook.idempotency_header else None
    wanted = TriggerRequest(dag_id, {**conf, "webhook": webhook.name})
    if delivery:
        key = f"webhook:{webhook.name}:{delivery.strip()[:200]}"
        fingerprint = hashlib.sha256(request.body).hexdigest()
        wanted = TriggerRequest(
            dag_id, wanted.conf, idempotency=IdempotencyKey(key, fingerprint, KEY_TTL)
        )
        replay = _replay(store, dag_id, key)
        if replay is not None:
            return replay
    try:
        run = control_of(control).trigger(wanted)
    except Conflict:
        replay = _replay(store, dag_id, wanted.idempotency.key) if wanted.idempotency else None
        if replay is None:
            raise
        return replay
    location = f"/api/v1/dags/{quote(dag_id)}/runs/{quote(run.run_id, safe='')}"
    return envelope({"run": run_dict(run), "replayed": False}, status=202,
                    headers={"Location": location})  # fmt: skip


def _replay(store: Store, dag_id: str, key: str) -> Response | None:
    held = store.runs.find_idempotency_key(dag_id, key)
    if held is None:
        return None
    try:
        run = store.runs.get_run(dag_id, held.run_id)
    except NotFound:
        return None
    return envelope({"run": run_dict(run), "replayed": True})
