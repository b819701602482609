"""``GET /api/v1/events``: the event log as a Server-Sent Events stream.

Each message is ``id: <seq>``, ``event: <type>``, ``data: <one-line JSON>``. A client that
reconnects with ``Last-Event-ID`` (or ``?last_event_id=``) first gets every stored event after
that id, then the live ones — subscribed before the log is read, so the seam has neither a
gap nor a duplicate. A subscriber that falls behind is disconnected (it resumes from its last
id); the engine never waits for one. Each event is encoded once per server, and subscribers
with the same filters share one filtered, encoded batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline_core.api.http import Request, Response, bad_request
from pipeline_core.api.hub import StreamHub
from pipeline_core.events import EventBus
from pipeline_core.store.base import Store
from pipeline_core.store.types import EVENT_TYPES, Event, EventQuery

REPLAY_PAGE = 1000
ALLOWED = {"dag_id", "run_id", "types", "last_event_id", "access_token"}
ENCODED_MAX = 50_000


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
class StreamRequest:
    """What a client asked for, checked before the stream starts."""

    dag_id: str | None
    run_id: str | None
    types: tuple[str, ...]
    last_id: int | None

    def accepts(self, event: Event) -> bool:
        return (
            event.type in self.types
            and (self.dag_id is None or event.dag_id == self.dag_id)
            and (self.run_id is None or event.run_id == self.run_id)
        )

    def query(self, after: int) -> EventQuery:
        return EventQuery(after, self.dag_id, self.run_id, None, self.types, REPLAY_PAGE)


def parse_stream_request(request: Request) -> StreamRequest:
    unknown = sorted(set(request.query) - ALLOWED)
    if unknown:
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}")
    types = tuple(t for value in request.query.get("types", []) for t in value.split(",") if t)
    bad = [t for t in types if t not in EVENT_TYPES]
    if bad:
        raise bad_request(f"unknown event type(s) {', '.join(bad)}; use {', '.join(EVENT_TYPES)}")
    raw = request.header("last-event-id") or _one(request, "last_event_id")
    last_id = None
    if raw:
        if not raw.isdigit():
            raise bad_request(f"Last-Event-ID must be an event seq (an integer ≥ 0), got {raw!r}")
        last_id = int(raw)
    return StreamRequest(
        _one(request, "dag_id"), _one(request, "run_id"), types or EVENT_TYPES, last_id
    )


def events_route(
    store: Store, bus: EventBus, hub: StreamHub, queue_size: int
) -> Callable[[Request], Response]:
    encode = EventEncoder()

    def handle(request: Request) -> Response:
        wanted = parse_stream_request(request)
        key = (wanted.dag_id, wanted.run_id, wanted.types)
        # Subscribe first, then look at the log: nothing committed in between is missed.
        subscription = bus.subscribe(
            maxsize=queue_size, accept=wanted.accepts, key=key, encode=encode
        )
        first, head = store.event_bounds()
        if wanted.last_id is not None and wanted.last_id > head:
            subscription.close()
            raise bad_request(
                f"Last-Event-ID {wanted.last_id} is newer than the newest event ({head})"
            )
        replay = _Replay(store, wanted, encode, first, head)
        response = Response(200, b"", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream; charset=utf-8"
        response.stream = replay.chunks()
        response.handover = lambda sock: hub.attach(sock, subscription, replay.sent, encode)
        return response

    return handle


class _Replay:
    """The start of a stream: the retry hint, a reset notice, and the stored events a
    resuming client missed. ``sent`` is where the live part takes over."""

    def __init__(
        self, store: Store, wanted: StreamRequest, encode: EventEncoder, first: int, head: int
    ) -> None:
        self.store, self.wanted, self.encode = store, wanted, encode
        self.first, self.head = first, head
        self.sent = head if wanted.last_id is None else wanted.last_id

    def chunks(self) -> Iterator[bytes]:
        yield b"retry: 3000\n\n"
        last_id = self.wanted.last_id
        if last_id is None:
            return
        if self.head and last_id + 1 < self.first:
            note = {
                "reason": "events after the requested id were removed by retention",
                "first_seq": self.first,
            }
            yield f"event: reset\ndata: {json.dumps(note)}\n\n".encode()
        while page := self.store.read_events(self.wanted.query(self.sent)):
            yield b"".join(map(self.encode, page))
            self.sent = page[-1].seq


def _one(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values else None
