"""``GET /api/v1/events``: the event log as a Server-Sent Events stream.

Each message is ``id: <seq>``, ``event: <type>``, ``data: <one-line JSON>``. A client that
reconnects with ``Last-Event-ID`` (or ``?last_event_id=``) first gets every stored event after
that id, then the live ones — subscribed before the replay is read, so the seam has neither a
gap nor a duplicate. A subscriber that falls behind is disconnected (it resumes from its last
id); the engine never waits for one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from pipeline_core.api.http import HTTPError, Request, Response, bad_request
from pipeline_core.events import EventBus
from pipeline_core.store.base import Store
from pipeline_core.store.types import EVENT_TYPES, Event, EventQuery

REPLAY_PAGE = 1000
ALLOWED = {"dag_id", "run_id", "types", "last_event_id", "access_token"}


def format_event(event: Event) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n".encode()


def events_route(
    store: Store, bus: EventBus, keepalive: float, queue_size: int
) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        unknown = sorted(set(request.query) - ALLOWED)
        if unknown:
            raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}")
        dag_id = _one(request, "dag_id")
        run_id = _one(request, "run_id")
        types = tuple(t for value in request.query.get("types", []) for t in value.split(",") if t)
        bad = [t for t in types if t not in EVENT_TYPES]
        if bad:
            raise bad_request(
                f"unknown event type(s) {', '.join(bad)}; use {', '.join(EVENT_TYPES)}"
            )
        wanted = types or EVENT_TYPES
        last_id = _last_event_id(request)
        first, head = store.event_bounds()
        if last_id is not None and last_id > head:
            raise bad_request(f"Last-Event-ID {last_id} is newer than the newest event ({head})")

        def accept(event: Event) -> bool:
            return (
                event.type in wanted
                and (dag_id is None or event.dag_id == dag_id)
                and (run_id is None or event.run_id == run_id)
            )

        subscription = bus.subscribe(maxsize=queue_size, accept=accept)  # before the replay
        reset = last_id is not None and head and last_id + 1 < first

        def stream() -> Iterator[bytes]:
            try:
                yield b"retry: 3000\n\n"
                sent = last_id if last_id is not None else head
                if reset:
                    note = {
                        "reason": "events after the requested id were removed by retention",
                        "first_seq": first,
                    }
                    yield f"event: reset\ndata: {json.dumps(note)}\n\n".encode()
                if last_id is not None:
                    query = EventQuery(
                        after_seq=last_id,
                        dag_id=dag_id,
                        run_id=run_id,
                        types=wanted,
                        limit=REPLAY_PAGE,
                    )
                    while True:
                        page = store.read_events(query)
                        for event in page:
                            yield format_event(event)
                            sent = event.seq
                        if len(page) < REPLAY_PAGE:
                            break
                        query = EventQuery(
                            after_seq=sent,
                            dag_id=dag_id,
                            run_id=run_id,
                            types=wanted,
                            limit=REPLAY_PAGE,
                        )
                while True:
                    live = subscription.get(timeout=keepalive)
                    if live is None:
                        if subscription.closed:
                            return  # fell behind, or the server is stopping: the client resumes
                        yield b": keepalive\n\n"
                    elif live.seq > sent:
                        sent = live.seq
                        yield format_event(live)
            finally:
                subscription.close()

        response = Response(200, b"", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.content_type = "text/event-stream; charset=utf-8"
        response.stream = stream()
        return response

    return handle


def _one(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[-1] if values else None


def _last_event_id(request: Request) -> int | None:
    raw = request.header("last-event-id") or _one(request, "last_event_id")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Last-Event-ID must be an event seq (an integer), got {raw!r}") from None
    if value < 0:
        raise HTTPError(400, "invalid_request", "Last-Event-ID must be ≥ 0")
    return value
