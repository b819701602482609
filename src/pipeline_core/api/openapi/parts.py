"""The building blocks of the OpenAPI document: shared schemas of parameters and bodies,
the error answers every operation can give, and ``op`` for one operation."""

from __future__ import annotations

from typing import Any

from pipeline_core.api.openapi.schemas import obj, ref
from pipeline_core.dag.model import ID_PATTERN, RUN_ID_PATTERN

ID = {
    "type": "string",
    "pattern": ID_PATTERN.pattern,
    "description": "an id: 1 to 250 letters, digits, '_', '-' or '.' (not '.' or '..')",
}
#: Run ids the engine makes (``scheduled__2026-01-01T00:00:00+00:00``) also hold ':' and '+'.
RUN_ID = {
    "type": "string",
    "pattern": RUN_ID_PATTERN.pattern,
    "description": "an id: 1 to 250 letters, digits, '_', '-', '.', ':' or '+' (not '.' or '..')",
}
DATE_TIME = {"type": "string", "format": "date-time"}
#: Integers any parameter takes: exact in JSON (a double) and in SQLite.
MAX_INTEGER = 2**53
#: A run's note, set by hand or with the trigger.
NOTE = {"type": ["string", "null"], "maxLength": 1000}
TAGS = [
    {"name": "health", "description": "Liveness, versions and this document"},
    {"name": "dags", "description": "DAGs, their pause state, statistics and import errors"},
    {"name": "runs", "description": "Triggering, listing, cancelling and retrying runs"},
    {"name": "tasks", "description": "Task instances, their tries, XCom and logs"},
    {"name": "pools", "description": "Pools of slots that bound concurrent tasks"},
    {"name": "metrics", "description": "Counters, gauges and histograms"},
    {"name": "notifications", "description": "The notification outbox and its deliveries"},
    {"name": "assets", "description": "Assets, their updates, and the runs they start"},
    {"name": "webhooks", "description": "Signed deliveries that start runs"},
    {"name": "variables", "description": "Shared settings; secret ones sealed and masked"},
    {"name": "accounts", "description": "Named API tokens with roles, and the audit trail"},
    {"name": "connections", "description": "Connections to other systems; passwords sealed"},
    {"name": "events", "description": "The event log as a live Server-Sent Events stream"},
]
DESCRIPTION = (
    "Drive and watch a pipeline-core orchestrator: DAGs, runs, task instances, pools, "
    "metrics and a live event stream. Answers are JSON envelopes (`data`, `meta`; errors as "
    "`error.code`, `error.message`, `error.details`). GET answers carry a strong `ETag`; send "
    "it back in `If-None-Match` to get `304 Not Modified`. With a token configured, send "
    "`Authorization: Bearer <token>` (health and version are public)."
)


def envelope_of(
    schema: dict[str, Any], *, listing: bool = False, meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    data = {"type": "array", "items": schema} if listing else schema
    props: dict[str, Any] = {"data": data}
    if listing:
        props["meta"] = ref("Meta")
    elif meta is not None:
        props["meta"] = meta
    return {"type": "object", "properties": props, "required": list(props)}


def response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {
            "description": description,
            "content": {"application/json": {"schema": ref("Error")}},
        }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": response("invalid request, or framing the server refuses"),
    "401": response("missing, wrong, expired or revoked bearer token"),
    "403": response(
        "the token's role is below the one the operation needs, or a state change from an "
        "origin CORS does not allow"
    ),
    "404": response("not found"),
    "405": response("method not allowed"),
    "408": response("the request head or body took too long"),
    "409": response("conflict"),
    "413": response("body too large"),
    "415": response("body is not application/json, or is content-encoded"),
    "421": response("a Host that is not a name of this server (listening on loopback)"),
    "431": response("request head too large"),
    "500": response("internal error"),
    "501": response("a request method the server does not know"),
    "503": {
        **response("unavailable: the store, no engine, or too many open connections"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "required": False}},
    },
    "505": response("an HTTP version other than 1.0 and 1.1"),
}
NOT_MODIFIED = {
    "description": "not modified: the answer still has the ETag sent in If-None-Match",
    "headers": {"ETag": {"schema": {"type": "string"}, "required": True}},
}
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "ETags of answers the client has; 304 if the answer still has one",
}


def closed(required: list[str] | None = None, **props: Any) -> dict[str, Any]:
    """A request body object: no other fields are accepted."""
    return {**obj(required or [], **props), "additionalProperties": False}
