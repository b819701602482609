"""``POST /dags/:dag_id/runs``: trigger a run, idempotently when the client gives a key.

With an ``Idempotency-Key`` header (or ``idempotency_key`` in the body) the first request
creates the run (201) and stores the key with it, in the run's own transaction; a repeat with
the same key and the same body answers that run (200, ``meta.idempotent_replay``); the same key
with another body is a 409 naming the key. Concurrent repeats race on the stored key: the
losers' runs are refused by the store before anything is written, and they answer the winner's
run as a replay.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from pipeline_core.api.http import HTTPError, Request, Response, bad_request, envelope
from pipeline_core.api.openapi.operation import DAG, Answer, Operation, Param
from pipeline_core.api.openapi.parts import DATE_TIME, ID, NOTE, closed, envelope_of
from pipeline_core.api.openapi.schemas import obj, ref
from pipeline_core.api.routes.runs import control_of
from pipeline_core.api.serialize import run_dict
from pipeline_core.dag.model import parse_datetime
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import DagRun, IdempotencyKey, TriggerRequest
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord

DEFAULT_KEY_TTL = 24 * 3600.0
#: Printable ASCII without spaces at the ends, as the IETF draft's keys are (a UUID fits).
KEY = {
    "type": "string",
    "pattern": r"^[!-~]([ -~]{0,253}[!-~])?$",
    "description": "1 to 255 printable ASCII characters, without spaces at either end",
}
META = obj(
    ["dag_is_paused"],
    dag_is_paused={"type": "boolean"},
    message={"type": "string"},
    idempotent_replay={"type": "boolean", "const": True},
)
TRIGGER = Operation(
    "trigger_run",
    "runs",
    "Trigger a run",
    "Create a manual run with an optional conf, run id, logical date and note. The answer's "
    "Location is the run's URL; a paused DAG's run waits until it is unpaused. With an "
    "Idempotency-Key header (or idempotency_key), a repeat with the same key and body "
    "answers the first request's run with 200 and meta.idempotent_replay; the same key with "
    "another body is a 409. Keys are held 24 hours by default.",
    envelope_of(ref("Run"), meta=META),
    (
        *DAG,
        Param(
            "Idempotency-Key",
            "header",
            KEY,
            "a repeat with the same key and body answers the run the first request created",
        ),
    ),
    body=closed(
        conf={"type": ["object", "null"]},
        run_id={**ID, "type": ["string", "null"]},
        logical_date={**DATE_TIME, "type": ["string", "null"]},
        note=NOTE,
        idempotency_key={**KEY, "type": ["string", "null"]},
        priority={
            "type": ["integer", "null"],
            "minimum": -1_000_000,
            "maximum": 1_000_000,
            "description": "higher runs start first, and their tries first in a pool",
        },
    ),
    example={"conf": {"env": "staging"}, "run_id": "deploy-42", "note": "from CI"},
    created=True,
    answers=[
        Answer(
            "200",
            "the run an earlier request with this idempotency key created",
            envelope_of(ref("Run"), meta=META),
            headers={"Location": {"schema": {"type": "string"}, "required": True}},
        )
    ],
)


def trigger_run(
    store: Store, control: Control | None, key_ttl: float = DEFAULT_KEY_TTL
) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.fields
        dag_id = request.params["dag_id"]
        record = store.dags.get_dag(dag_id)
        wanted = trigger_request(dag_id, body)
        key = _idempotency_key(request, body)
        if key is not None:
            fingerprint = _fingerprint(body)
            replay = _replay(store, record, key, fingerprint)
            if replay is not None:
                return replay
            wanted = replace(wanted, idempotency=IdempotencyKey(key, fingerprint, key_ttl))
        try:
            run = control_of(control).trigger(wanted)
        except Conflict:
            replay = _replay(store, record, key, fingerprint) if key is not None else None
            if replay is None:
                raise
            return replay
        return _answer(record, run, 201, {})

    return handle


def trigger_request(dag_id: str, body: dict[str, Any]) -> TriggerRequest:
    """The trigger a checked request body asks for."""
    options: dict[str, Any] = {
        name: body[name] for name in ("run_id", "note", "priority") if body.get(name) is not None
    }
    if body.get("logical_date") is not None:
        options["logical_date"] = parse_datetime(body["logical_date"])
    return TriggerRequest(dag_id, body.get("conf") or {}, **options)


def _idempotency_key(request: Request, body: dict[str, Any]) -> str | None:
    header, field = request.args.get("Idempotency-Key"), body.get("idempotency_key")
    if header is not None and field is not None and header != field:
        raise bad_request("the Idempotency-Key header and 'idempotency_key' in the body differ")
    return header if header is not None else field


def _fingerprint(body: dict[str, Any]) -> str:
    """What makes two triggers the same request: the body's fields other than the key, with
    a missing field and ``null`` (and a missing ``conf`` and ``{}``) alike."""
    fields = {k: v for k, v in body.items() if k != "idempotency_key" and v is not None}
    if fields.get("conf") == {}:
        del fields["conf"]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(store: Store, record: DagRecord, key: str, fingerprint: str) -> Response | None:
    """The answer for a key already held: the run it created (200), or 409 when the body
    differs; ``None`` when no live run holds the key."""
    held = store.runs.find_idempotency_key(record.dag_id, key)
    if held is None:
        return None
    if held.fingerprint != fingerprint:
        raise HTTPError(
            409,
            "conflict",
            f"idempotency key {key!r} was used for run '{held.run_id}' with another request "
            "body; use a new key for a different trigger",
            details={"idempotency_key": key, "run_id": held.run_id},
        )
    try:
        run = store.runs.get_run(record.dag_id, held.run_id)
    except NotFound:  # deleted since (retention): the key went with it
        return None
    return _answer(record, run, 200, {"idempotent_replay": True})


def _answer(record: DagRecord, run: DagRun, status: int, meta: dict[str, Any]) -> Response:
    meta = {**meta, "dag_is_paused": record.is_paused}
    if record.is_paused:
        meta["message"] = (
            f"DAG '{record.dag_id}' is paused: the run stays queued until it is unpaused"
        )
    location = f"/api/v1/dags/{quote(record.dag_id)}/runs/{quote(run.run_id, safe='')}"
    return envelope(run_dict(run), meta, status=status, headers={"Location": location})
