"""An operation as its route declares it: parameters, body, answers and examples.

A route carries one ``Operation``; the served OpenAPI document (``document.py``) and the
checks every request passes before its handler runs (``checks.py``) are both made from it, so
what the document promises and what the server enforces cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.api.openapi.parts import (
    ERRORS,
    ID,
    IF_NONE_MATCH,
    MAX_INTEGER,
    NOT_MODIFIED,
    RUN_ID,
    response,
)

JSON = "application/json"


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter. Query values arrive as text and are read by their
    schema's type (integers, numbers, booleans; arrays repeat or comma-separate)."""

    name: str
    where: str = "query"
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    description: str = ""

    @property
    def required(self) -> bool:
        return self.where == "path"

    def openapi(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.required,
            "schema": dict(self.schema),
            "description": self.description,
        }


@dataclass(frozen=True)
class Answer:
    """One more answer an operation gives besides its success and the shared errors."""

    status: str
    description: str
    schema: Mapping[str, Any] | None = None  # None: the error envelope
    headers: Mapping[str, Any] = field(default_factory=dict)
    media: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def openapi(self) -> dict[str, Any]:
        answer = response(self.description, dict(self.schema) if self.schema else None)
        answer["content"].update({k: dict(v) for k, v in self.media.items()})
        if self.headers:
            answer["headers"] = dict(self.headers)
        return answer


@dataclass(frozen=True)
class Operation:
    """What a route does and takes. ``read``: a GET whose answer carries an ``ETag`` (and
    can be a 304); ``created``: the success is a 201 with ``Location``. ``body`` is the
    JSON Schema of the request body (``body_required``: it may not be left out);
    ``example`` a body a client might send. ``media`` gives the success other media types
    (a text stream) besides, or instead of (``json=False``), the JSON envelope."""

    operation_id: str
    tag: str
    summary: str
    description: str
    success: Mapping[str, Any]
    params: Sequence[Param] = ()
    body: Mapping[str, Any] | None = None
    body_required: bool = False
    example: Mapping[str, Any] | None = None
    read: bool = False
    created: bool = False
    answers: Sequence[Answer] = ()
    media: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    json: bool = True
    errors: Sequence[str] = tuple(ERRORS)
    #: Who may call it: ``public`` (no token asked), ``viewer``, ``operator`` or ``admin``;
    #: ``None`` reads as ``viewer`` for a GET and ``operator`` for anything else.
    role: str | None = None
    #: What a token scoped to the DAGs of one tag may do here: ``dag`` (the path names a
    #: DAG, which must be in scope: 404 otherwise), ``filtered`` (the handler answers what is
    #: in scope only), ``none`` (about no DAG), ``all`` (about every DAG: refused).
    scope: str = "all"

    def needed_role(self, method: str) -> str:
        if self.role is not None:
            return self.role
        return "viewer" if method in ("GET", "HEAD") else "operator"

    def openapi(self, method: str = "GET") -> dict[str, Any]:
        ok = "201" if self.created else "200"
        success = response(self.summary, dict(self.success))
        if not self.json:
            success["content"] = {}
        success["content"].update({k: dict(v) for k, v in self.media.items()})
        if self.read:
            # A followed log or a stream is still being written: it has no tag.
            tagged = self.json and not self.media
            success["headers"] = {"ETag": {"schema": {"type": "string"}, "required": tagged}}
        if self.created:
            success["headers"] = {"Location": {"schema": {"type": "string"}, "required": True}}
        responses = {ok: success, **{code: ERRORS[code] for code in self.errors}}
        if self.read:
            responses["304"] = NOT_MODIFIED
        responses.update({a.status: a.openapi() for a in self.answers})
        operation: dict[str, Any] = {
            "operationId": self.operation_id,
            "tags": [self.tag],
            "summary": self.summary,
            "description": self.description,
            "parameters": [
                *(p.openapi() for p in self.params),
                *([IF_NONE_MATCH] if self.read else []),
            ],
            "responses": responses,
            "x-required-role": self.needed_role(method),
        }
        if self.body is not None:
            media: dict[str, Any] = {"schema": dict(self.body)}
            if self.example is not None:
                media["example"] = dict(self.example)
            operation["requestBody"] = {"required": self.body_required, "content": {JSON: media}}
        return operation


def many(values: Any) -> dict[str, Any]:
    """A query parameter given repeatedly (or comma-separated), each one of ``values``."""
    return {"type": "array", "items": {"enum": list(values)}}


def page(max_limit: int = 1000) -> tuple[Param, Param]:
    """``limit`` and ``offset`` of a listing."""
    return (
        Param("limit", schema={"type": "integer", "minimum": 1, "maximum": max_limit}),
        Param("offset", schema={"type": "integer", "minimum": 0, "maximum": MAX_INTEGER}),
    )


DAG = (Param("dag_id", "path", ID),)
RUN = (*DAG, Param("run_id", "path", RUN_ID))
TASK = (*RUN, Param("task_id", "path", ID))
PAGE = page()
