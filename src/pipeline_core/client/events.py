"""The event stream for the client: Server-Sent Events parsed into ``Event`` values, resumed
from the last id after a dropped connection (a server restart included)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_core.client.transport import (
    CONNECTION_ERRORS,
    APIError,
    ServerUnreachable,
    StreamTimedOut,
    Transport,
    error_of,
)

#: The type of the event ``stream`` yields each time the stream is (again) subscribed, with
#: no id and no data: whatever is committed after it arrives in the stream.
OPEN = "open"


@dataclass(frozen=True)
class Event:
    """One message of the stream: ``id`` (the event's seq), ``type`` and its JSON ``data``
    (``reset`` and ``open`` messages have no id)."""

    id: int | None
    type: str
    data: dict[str, Any]

    @property
    def run_id(self) -> str | None:
        value = self.data.get("run_id")
        return value if isinstance(value, str) else None


def stream(
    transport: Transport,
    query: Mapping[str, Any],
    last_event_id: int | None,
    *,
    max_tries: int,
    read_timeout: float,
    until: float | None = None,
    resume: bool = True,
) -> Iterator[Event]:
    """Every event after ``last_event_id`` (or from now), live, for as long as the caller
    reads. A dropped connection is opened again with ``Last-Event-ID``; ``ServerUnreachable``
    after ``max_tries`` failed connections in a row; ``APIError`` when the server refuses;
    ``StreamTimedOut`` once ``until`` (monotonic) passes. Without ``resume`` it ends when
    the server ends the stream."""
    failures = 0
    retry = 1.0

    def timeout() -> float:
        if until is None:
            return read_timeout
        left = until - time.monotonic()
        if left <= 0:
            raise StreamTimedOut("the stream's deadline passed")
        return min(read_timeout, left)

    while True:
        connection = transport.connect(timeout())
        try:
            response = _open(transport, connection, query, last_event_id)
            failures = 0
            for fields in _messages(_lines(response, connection, timeout)):
                if fields.get("retry", "").isdigit():
                    retry = int(fields["retry"]) / 1000
                    # The server sends it once the stream is subscribed: from here on,
                    # nothing committed is missed.
                    yield Event(None, OPEN, {})
                if "data" in fields:
                    event = _event(fields)
                    if event.id is not None:
                        last_event_id = event.id
                    yield event
            if not resume:
                return
        except APIError:
            raise
        except CONNECTION_ERRORS as exc:
            if until is not None and time.monotonic() >= until:
                raise StreamTimedOut("the stream's deadline passed") from None
            failures += 1
            if failures >= max_tries:
                raise ServerUnreachable(
                    f"cannot reach {transport.base_url}/api/v1/events "
                    f"({getattr(exc, 'strerror', None) or exc or type(exc).__name__}); "
                    f"gave up after {failures} tries"
                ) from None
        finally:
            connection.close()
        pause = min(retry, 5.0) * (1 if failures <= 1 else 2)
        time.sleep(min(pause, timeout()))


def _open(
    transport: Transport,
    connection: http.client.HTTPConnection,
    query: Mapping[str, Any],
    last_event_id: int | None,
) -> http.client.HTTPResponse:
    """The stream's response; ``APIError`` when refused (a 503 counts as no answer)."""
    headers = transport.headers({"Accept": "text/event-stream"})
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    connection.request("GET", transport.path("/api/v1/events", query), headers=headers)
    response = connection.getresponse()
    if response.status == 200:
        return response
    if response.status == 503:
        raise ConnectionError("the server is unavailable")
    body = response.read()
    try:
        payload: Any = json.loads(body)
    except ValueError:
        payload = body
    raise error_of(response.status, payload, {k.lower(): v for k, v in response.getheaders()})


def _messages(lines: Iterator[bytes]) -> Iterator[dict[str, str]]:
    """The fields of each message (comments skipped)."""
    fields: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
            continue
        if fields:
            yield fields
        fields = {}


def _lines(
    response: http.client.HTTPResponse,
    connection: http.client.HTTPConnection,
    timeout: Callable[[], float],
) -> Iterator[bytes]:
    """The body's lines, each read with what is left of the deadline as its timeout."""
    while True:
        if connection.sock is not None:
            connection.sock.settimeout(timeout())
        line = response.fp.readline()
        if not line:
            return
        yield line


def _event(fields: Mapping[str, str]) -> Event:
    try:
        data = json.loads(fields["data"])
    except ValueError:
        data = {"text": fields["data"]}
    raw_id = fields.get("id")
    return Event(
        int(raw_id) if raw_id and raw_id.isdigit() else None,
        fields.get("event", "message"),
        data if isinstance(data, dict) else {"value": data},
    )
