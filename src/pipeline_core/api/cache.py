"""Rendered responses of read-mostly views, kept until the event log says they changed.

``GET /dags`` renders every DAG with its newest run and next fire time; between changes
(a DAG or run event) the same bytes are served again. An entry also expires at the earliest
``next_run_date`` it shows, since that moves on by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from pipeline_core.api.conditional import etag_of
from pipeline_core.api.http import Response
from pipeline_core.clock import Clock, SystemClock
from pipeline_core.events import Event

MAX_ENTRIES = 256


class ViewCache:
    def __init__(
        self,
        clock: Clock | None = None,
        watched: Iterable[str] = ("dag.updated", "run.state_changed", "run.deleted"),
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.watched = frozenset(watched)
        self.version = 0
        self._entries: dict[str, tuple[int, datetime | None, Response]] = {}
        self._lock = threading.Lock()

    def on_events(self, events: list[Event]) -> None:
        """Store listener: any watched event invalidates every entry."""
        if any(event.type in self.watched for event in events):
            with self._lock:
                self.version += 1
                self._entries.clear()

    def peek(self, key: str) -> Response | None:
        """The kept answer for ``key`` if it is still valid."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != self.version:
                return None
        if entry[1] is not None and entry[1] <= self.clock.now():
            return None
        return entry[2].copy()

    def get_or_render(
        self, key: str, render: Callable[[], tuple[Response, datetime | None]]
    ) -> Response:
        with self._lock:
            version = self.version
        kept = self.peek(key)
        if kept is not None:
            return kept
        response, expires = render()
        with self._lock:
            if self.version == version and response.status == 200:
                response.headers["ETag"] = etag_of(response.body)  # once, not per hit
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = (version, expires, response)
        return response.copy()
