"""``GET /api/v1/events``: the event log as a Server-Sent Events stream.

Each message is ``id: <seq>``, ``event: <type>``, ``data: <one-line JSON>``. The route checks
the request and notes the log's head before it answers, then hands the connection to an
``EventStreams`` backend, which sends every matching event after that point: first the stored
ones (everything after ``Last-Event-ID`` for a resuming client), then the live ones, with
neither a gap nor a duplicate at the seam. A subscriber that falls behind is disconnected (it
resumes from its last id); the engine never waits for one.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Protocol

from pipeline_core.api.http import Request, Response, bad_request
from pipeline_core.api.openapi.operation import Operation, Param, many
from pipeline_core.api.openapi.parts import ID, MAX_INTEGER, RUN_ID
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.events import EVENT_TYPES, Event
from pipeline_core.store.base import Store
from pipeline_core.store.types import EventQuery

REPLAY_PAGE = 1000
ENCODED_MAX = 50_000
RETRY = b"retry: 3000\n\n"
SEQ = {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER}
#: The DAGs a scoped token's stream may show at most (those of its tag when it starts).
SCOPE_MAX = 100_000

STREAM = Operation(
    "stream_events",
    "events",
    "Live event stream (Server-Sent Events); resume with Last-Event-ID",
    "The event log as Server-Sent Events, stored ones after Last-Event-ID first, then live "
    "ones. Each message is `id: <seq>`, `event: <type>` and `data: <Event as one-line "
    "JSON>`; `: keepalive` comments keep idle streams open. Over HTTP/1.1 the body is "
    "chunked, one chunk per write.",
    {},
    (
        Param("dag_id", schema=ID),
        Param("run_id", schema=RUN_ID),
        Param(
            "types", schema=many(EVENT_TYPES), description="event types (repeat or comma-separate)"
        ),
        Param("last_event_id", schema=SEQ),
        Param("access_token", description="the bearer token, for EventSource"),
        Param("Last-Event-ID", "header", SEQ),
    ),
    json=False,
    media={"text/event-stream": {"schema": {"type": "string"}, "x-item-schema": ref("Event")}},
    errors=("400", "401", "403", "421", "503"),
    scope="filtered",
)


class EventEncoder:
    """Message bytes per event ``seq``, kept for the recent events of one store."""

    def __init__(self) -> None:
        self._encoded: dict[int, bytes] = {}

    def __call__(self, event: Event) -> bytes:
        encoded = self._encoded.get(event.seq)
        if encoded is None:
            data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
            encoded = f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()
            if len(self._encoded) >= ENCODED_MAX:
                self._encoded.clear()
            self._encoded[event.seq] = encoded
        return encoded


@dataclass(frozen=True)
class StreamStart:
    """What a client asked for, checked before the stream starts, and where it starts:
    every matching event after ``after``; ``reset_first`` is set when retention removed
    events the client asked for (the stream then opens with an ``event: reset``)."""

    dag_id: str | None
    run_id: str | None
    types: tuple[str, ...]
    after: int
    reset_first: int | None = None
    #: Each write goes out as one chunk of a chunked body (HTTP/1.1), so a client hands every
    #: event over as it arrives; an HTTP/1.0 stream is delimited by closing the connection.
    chunked: bool = False
    #: The token's name (its revocation ends the stream) and, for a token scoped by tag, the
    #: DAGs in its scope: events of other DAGs are not sent.
    account: str | None = None
    dag_ids: tuple[str, ...] | None = None

    @property
    def key(self) -> tuple[str | None, str | None, tuple[str, ...], tuple[str, ...] | None]:
        """Streams with equal keys accept the same events."""
        return self.dag_id, self.run_id, self.types, self.dag_ids

    def accepts(self, event: Event) -> bool:
        return (
            event.type in self.types
            and (self.dag_id is None or event.dag_id == self.dag_id)
            and (self.run_id is None or event.run_id == self.run_id)
            and (self.dag_ids is None or event.dag_id is None or event.dag_id in self.dag_ids)
        )

    def query(self, after: int) -> EventQuery:
        return EventQuery(after, self.dag_id, self.run_id, None, self.types, REPLAY_PAGE)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> StreamStart:
        fields = json.loads(data)
        scope = fields.get("dag_ids")
        return cls(**{**fields, "types": tuple(fields["types"]),
                      "dag_ids": tuple(scope) if scope is not None else None})  # fmt: skip


class EventStreams(Protocol):
    """Where live streams are written from: this process, or a process of their own."""

    def publish(self, events: list[Event]) -> None:
        """Events this process has seen committed (never blocks)."""
        ...

    def attach(self, sock: socket.socket, start: StreamStart) -> None:
        """Take over ``sock`` (its headers are sent) and stream to it from ``start``."""
        ...

    def stop(self) -> None:
        """End every stream."""
        ...


def replay(store: Store, start: StreamStart, encode: EventEncoder) -> Iterator[tuple[int, bytes]]:
    """The start of a stream as (last seq sent, bytes): the retry hint — sent once the stream
    is subscribed, so a client that has it misses nothing committed later —, the reset
    notice, then pages of the stored events after ``start.after`` until the log has no more."""
    yield start.after, RETRY
    if start.reset_first is not None:
        note = {
            "reason": "events after the requested id were removed by retention",
            "first_seq": start.reset_first,
        }
        yield start.after, f"event: reset\ndata: {json.dumps(note)}\n\n".encode()
    after = start.after
    while page := store.events.read_events(start.query(after)):
        after = page[-1].seq
        shown = page if start.dag_ids is None else [e for e in page if start.accepts(e)]
        yield after, b"".join(map(encode, shown))


def parse_stream_request(request: Request, store: Store) -> StreamStart:
    args = request.args
    types = tuple(args.get("types", ()))
    given = args.get("Last-Event-ID", args.get("last_event_id"))
    first, head = store.events.event_bounds()
    after, reset_first = head, None
    if given is not None:
        after = given
        if after > head:
            raise bad_request(f"Last-Event-ID {after} is newer than the newest event ({head})")
        if head and after + 1 < first:
            reset_first = first
    account = request.account
    dag_ids = None
    if account is not None and account.dags_tag is not None:
        scoped = store.dags.list_dags(within_tag=account.dags_tag, limit=SCOPE_MAX)
        dag_ids = tuple(record.dag_id for record in scoped.items)
    return StreamStart(
        args.get("dag_id"), args.get("run_id"), types or EVENT_TYPES, after, reset_first,
        account=account.name if account is not None else None, dag_ids=dag_ids,
    )  # fmt: skip


def events_route(store: Store, streams: EventStreams) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        start = parse_stream_request(request, store)
        response = Response(200, b"", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream; charset=utf-8"
        response.handover = lambda sock, chunked: streams.attach(
            sock, replace(start, chunked=chunked)
        )
        return response

    return handle
