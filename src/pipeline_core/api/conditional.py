"""Conditional reads: a strong ``ETag`` on every GET answer, ``If-None-Match`` → 304, and the
answers about finished runs kept ready.

The tag is a hash of the answer's bytes, so it changes exactly when what the answer shows
changes. A finished run (``success``, ``failed``, ``cancelled``) can only change through an
event of its own (a retry, a task marked again), so its detail, task list, task instances
and XCom are kept, rendered and tagged, in ``FinishedRuns`` until such an event: a CI job or
monitor that polls a finished run then costs a dictionary lookup, with or without a tag.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

from pipeline_core.api.http import Request, Response
from pipeline_core.errors import NotFound
from pipeline_core.events import Event
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store.base import Store

MAX_ENTRIES = 2048
MAX_BYTES = 64 * 1024 * 1024
RunKey = tuple[str, str]


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def tagged(request: Request, response: Response) -> Response:
    """``response`` with its ``ETag`` (unless it has one), or a 304 if the client's
    ``If-None-Match`` names it. Only successful GET and HEAD answers are tagged."""
    if request.method not in ("GET", "HEAD") or response.status != 200:
        return response
    if response.handover is not None or response.later is not None:
        return response
    etag = response.headers.get("ETag")
    if etag is None:
        etag = response.headers["ETag"] = etag_of(response.body)
    wanted = request.header("if-none-match")
    if wanted is not None and _matches(wanted, etag):
        return Response(304, b"", {"ETag": etag}, response.content_type)
    return response


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison, as ``If-None-Match`` uses."""
    if if_none_match.strip() == "*":
        return True
    return any(t.strip().removeprefix("W/") == etag for t in if_none_match.split(","))


class FinishedRuns:
    """Rendered, tagged answers about finished runs, dropped on any event of their run.

    Whether the run is finished is read before rendering, and ``generation`` per run guards
    the race between a render and an event: an answer rendered before an event of its run
    (committed before the listener hears of it) is never stored after that event.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: OrderedDict[tuple[RunKey, str], Response] = OrderedDict()
        self._by_run: dict[RunKey, set[tuple[RunKey, str]]] = {}
        self._generation: dict[RunKey, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def on_events(self, events: list[Event]) -> None:
        runs = {(e.dag_id, e.run_id) for e in events if e.dag_id and e.run_id}
        if not runs:
            return
        with self._lock:
            for run in runs:
                self._generation[run] = self._generation.get(run, 0) + 1
                for key in self._by_run.pop(run, ()):
                    self._drop(key)
            if len(self._generation) > MAX_ENTRIES * 4:
                self._generation.clear()  # (stored entries were dropped as their runs moved)

    def peek(self, request: Request) -> Response | None:
        """The kept answer to ``request`` (a GET about one run), if there is one."""
        cached, _ = self._lookup(request)
        return cached

    def _lookup(self, request: Request) -> tuple[Response | None, int]:
        run: RunKey = (request.params["dag_id"], request.params["run_id"])
        key = (run, f"{request.path}?{request.query_string}")
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
            return (cached.copy() if cached is not None else None), self._generation.get(run, 0)

    def wrap(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``handler`` (a GET about one run) answered from here once its run is finished."""

        def handle(request: Request) -> Response:
            cached, generation = self._lookup(request)
            if cached is not None:
                return cached
            run: RunKey = (request.params["dag_id"], request.params["run_id"])
            key = (run, f"{request.path}?{request.query_string}")
            finished = self._finished(run)  # before rendering: see the class docstring
            response = handler(request)
            if response.status == 200 and finished:
                response.headers["ETag"] = etag_of(response.body)
                self._keep(key, generation, response)
            return response

        return handle

    def _finished(self, run: RunKey) -> bool:
        try:
            return self.store.runs.get_run(*run).state in FINISHED_RUN_STATES
        except NotFound:
            return False  # the handler answers the 404

    def _keep(self, key: tuple[RunKey, str], generation: int, response: Response) -> None:
        run = key[0]
        with self._lock:
            if self._generation.get(run, 0) != generation or key in self._entries:
                return
            self._entries[key] = response.copy()
            self._by_run.setdefault(run, set()).add(key)
            self._bytes += len(response.body)
            while len(self._entries) > MAX_ENTRIES or self._bytes > MAX_BYTES:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._by_run.get(oldest[0], set()).discard(oldest)

    def _drop(self, key: tuple[RunKey, str]) -> None:
        response = self._entries.pop(key, None)
        if response is not None:
            self._bytes -= len(response.body)
