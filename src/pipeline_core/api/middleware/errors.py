"""Errors become answers in this one place: ``HTTPError`` as given, ``PipelineError``
subclasses by an MRO table (``NotFound`` → 404, ``Conflict`` → 409, ...), anything else →
500 with the request id (the traceback goes to the server log only)."""

from __future__ import annotations

import logging

from pipeline_core.api.http import HTTPError, Request, Response, error_body
from pipeline_core.api.middleware import Handler
from pipeline_core.errors import (
    ConfigurationError,
    Conflict,
    InvalidRequest,
    NotFound,
    PipelineError,
    StoreUnavailable,
)

logger = logging.getLogger("pipeline_core.api")
STATUS_BY_ERROR: dict[type[PipelineError], int] = {
    NotFound: 404,
    Conflict: 409,
    InvalidRequest: 400,
    StoreUnavailable: 503,
    ConfigurationError: 503,  # the server's own set-up (a secret key) is missing or wrong
}


def translate_errors(request: Request, call_next: Handler) -> Response | None:
    try:
        return call_next(request)
    except HTTPError as exc:
        return Response(
            exc.status, error_body(exc.code, exc.message, exc.details), dict(exc.headers)
        )
    except PipelineError as exc:
        status = next((STATUS_BY_ERROR[k] for k in type(exc).__mro__ if k in STATUS_BY_ERROR), 500)
        code = exc.code if status != 500 else "internal"
        return Response(status, error_body(code, exc.message, exc.details))
    except Exception:
        logger.exception("unhandled error in request %s", request.request_id)
        message = f"internal error; quote request id {request.request_id} when reporting it"
        return Response(500, error_body("internal", message))
