"""Who a request is and what became of it: its request id (the client's, when well-formed)
and one access-log line per answer."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from pipeline_core.api.http import Request, Response
from pipeline_core.api.middleware import Handler, Middleware

logger = logging.getLogger("pipeline_core.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def request_id(request: Request, call_next: Handler) -> Response | None:
    if not request.request_id:
        supplied = request.header("x-request-id")
        request.request_id = (
            supplied if supplied and _REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
        )
    response = call_next(request)
    if response is not None:
        response.headers["X-Request-Id"] = request.request_id
    return response


def access_log(as_json: bool) -> Middleware:
    def log(request: Request, call_next: Handler) -> Response | None:
        started = time.perf_counter()
        response = call_next(request)
        if response is None or response.later is not None:  # held: logged when answered
            return response
        duration_ms = (time.perf_counter() - started) * 1000
        if as_json:
            line = {
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "duration_ms": round(duration_ms, 2),
                "request_id": request.request_id,
            }
            logger.info(json.dumps(line))
        else:
            logger.info(
                "%s %s %d %.1fms %s",
                request.method,
                request.path,
                response.status,
                duration_ms,
                request.request_id,
            )
        return response

    return log
