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
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from pipeline_core.api.http import HTTPError, Request, Response, bad_request, envelope
from pipeline_core.api.routes.runs import MAX_NOTE, control_of
from pipeline_core.api.serialize import run_dict
from pipeline_core.dag.model import invalid_id_reason, parse_datetime
from pipeline_core.engine.control import Control
from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import DagRun, IdempotencyKey, TriggerRequest
from pipeline_core.store.base import Store
from pipeline_core.store.types import DagRecord

#: Printable ASCII without spaces at the ends, as the IETF draft's keys are (a UUID fits).
_KEY = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")
FIELDS = {"conf", "run_id", "logical_date", "note", "idempotency_key"}
DEFAULT_KEY_TTL = 24 * 3600.0


def trigger_run(
    store: Store, control: Control | None, key_ttl: float = DEFAULT_KEY_TTL
) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        body = request.json_object(FIELDS)
        dag_id = request.params["dag_id"]
        record = store.get_dag(dag_id)
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
    """The trigger a request body asks for (400 naming a bad field)."""
    if "conf" in body and body["conf"] is not None and not isinstance(body["conf"], dict):
        raise bad_request("'conf' must be a JSON object")
    options: dict[str, Any] = {}
    if body.get("run_id") is not None:
        reason = invalid_id_reason(body["run_id"])
        if reason:
            raise bad_request(f"run_id: {reason}")
        options["run_id"] = body["run_id"]
    if body.get("logical_date") is not None:
        try:
            if not isinstance(body["logical_date"], str):
                raise ValueError(f"expected an ISO 8601 string, got {body['logical_date']!r}")
            options["logical_date"] = parse_datetime(body["logical_date"])
        except ValueError as exc:
            raise bad_request(f"logical_date: {exc}") from None
    if body.get("note") is not None:
        if not isinstance(body["note"], str) or len(body["note"]) > MAX_NOTE:
            raise bad_request(f"'note' must be a string of at most {MAX_NOTE} characters")
        options["note"] = body["note"]
    return TriggerRequest(dag_id, body.get("conf") or {}, **options)


def _idempotency_key(request: Request, body: dict[str, Any]) -> str | None:
    header, field = request.header("idempotency-key"), body.get("idempotency_key")
    if field is not None and not isinstance(field, str):
        raise bad_request("'idempotency_key' must be a string")
    if header is not None and field is not None and header != field:
        raise bad_request("the Idempotency-Key header and 'idempotency_key' in the body differ")
    key = header if header is not None else field
    if key is not None and not _KEY.fullmatch(key):
        raise bad_request(
            "an idempotency key is 1 to 255 printable ASCII characters, without spaces at "
            "either end",
            idempotency_key=key[:300],
        )
    return key


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
    held = store.find_idempotency_key(record.dag_id, key)
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
        run = store.get_run(record.dag_id, held.run_id)
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
