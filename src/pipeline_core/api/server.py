"""``APIServer``: the REST API — the app built from its routes, served by ``LoopServer``
(``api/transport``), with the event streams, held waits and log followers it owns."""

from __future__ import annotations

from dataclasses import replace

from pipeline_core.api.app import App
from pipeline_core.api.cache import ViewCache
from pipeline_core.api.conditional import FinishedRuns
from pipeline_core.api.log_follow import LogFollowers
from pipeline_core.api.middleware.accounts import Gate
from pipeline_core.api.routes.builder import ServerParts, build_app
from pipeline_core.api.sse.process import ProcessStreams
from pipeline_core.api.sse.route import EventStreams
from pipeline_core.api.sse.threads import ThreadStreams
from pipeline_core.api.transport.server import LoopServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.api.waits import RunWaiters
from pipeline_core.events import Event


class APIServer:
    """The REST API: ``bind()`` (optional: take the port before anything else starts),
    ``start()`` / ``stop()``, or use it as a context manager."""

    def __init__(self, options: APIServerOptions) -> None:
        self.options = options
        self.cache = ViewCache(options.clock)
        self.finished_runs = FinishedRuns(options.store)
        self.waiters: RunWaiters | None = None
        self.followers: LogFollowers | None = None
        self.streams: EventStreams | None = None
        #: The application the server hands requests to, once started (an in-process client
        #: calls it directly, as the server does).
        self.app: App | None = None
        self._handle: LoopServer | None = None

    @property
    def port(self) -> int:
        assert self._handle is not None, "the server is not started"
        return self._handle.port

    def bind(self) -> APIServer:
        """Take the port now (``OSError`` if it is in use); ``start`` serves it later."""
        if self._handle is None:
            self._handle = LoopServer(self.options)
        return self

    def start(self, port: int | None = None) -> APIServer:
        if port is not None:
            self.options = replace(self.options, port=port)  # the caller's options stay as given
        self.bind()
        assert self._handle is not None
        self.streams = self._event_streams()
        self.waiters = RunWaiters()
        self.followers = LogFollowers(self.options.store, self.options.max_log_followers)
        store = self.options.store
        gate = Gate(self.options.auth_token, store.accounts, store.dags, self.options.clock.now)
        parts = ServerParts(
            self.cache, self.streams, self.finished_runs, self.waiters, self.followers, gate
        )
        app = self.app = build_app(self.options, parts)
        # Events reach the cache and the streams through the store's feed: this process's
        # commits at once and, when the engine runs elsewhere, other processes' as well.
        self.options.store.feed.subscribe(
            self._on_events, other_processes=self.options.follow_other_processes
        )
        self._handle.start(app)
        return self

    def _event_streams(self) -> EventStreams:
        options = self.options
        if options.event_streams == "process":
            if not options.database_url:
                raise ValueError("event_streams='process' needs the database_url to follow")
            return ProcessStreams(
                options.database_url,
                options.sse_keepalive,
                options.sse_queue_size,
                options.socket_timeout,
            )
        return ThreadStreams(options.store, options.sse_keepalive, options.sse_queue_size)

    def _on_events(self, events: list[Event]) -> None:
        self.cache.on_events(events)
        self.finished_runs.on_events(events)
        if self.waiters is not None:
            self.waiters.on_events(events)
        if self.streams is not None:
            self.streams.publish(events)

    def stop(self) -> None:
        """Ends every event stream, frees the port and leaves no thread behind."""
        if self._handle is None:
            return
        self.options.store.feed.unsubscribe(self._on_events)
        if self.streams is not None:
            self.streams.stop()
        if self.waiters is not None:
            self.waiters.stop()
        if self.followers is not None:
            self.followers.stop()
        self._handle.stop()
        self._handle = None

    def __enter__(self) -> APIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
