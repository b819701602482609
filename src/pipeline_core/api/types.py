"""``APIServerOptions``: everything the API server is configured with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline_core.clock import Clock, SystemClock
from pipeline_core.engine.control import Control
from pipeline_core.metrics import MetricsCollector
from pipeline_core.store.base import Store


@dataclass(frozen=True)
class APIServerOptions:
    """Frozen: a server keeps the options it was given (``dataclasses.replace`` makes new ones)."""

    store: Store
    host: str = "127.0.0.1"
    port: int = 8080
    control: Control | None = None
    metrics: MetricsCollector | None = None
    #: Where routes read the time (next fire times, health, cache expiry).
    clock: Clock = field(default_factory=SystemClock)
    cors_origins: Sequence[str] = field(default_factory=tuple)
    #: Names accepted as ``Host`` besides the loopback ones, when listening on loopback.
    allowed_hosts: Sequence[str] = field(default_factory=tuple)
    auth_token: str | None = None
    max_body_bytes: int = 1024 * 1024
    #: Open connections at most (``None``: half the process's descriptor limit).
    max_connections: int | None = None
    #: Seconds a request head may take from its first byte (and a new connection to send it).
    head_timeout: float = 10.0
    #: Seconds a request body may take once its head has arrived.
    body_timeout: float = 30.0
    #: Seconds a keep-alive connection may wait for its next request.
    idle_timeout: float = 30.0
    #: Threads that run route handlers (connections themselves cost no thread).
    handler_threads: int = 16
    #: Seconds a blocked write to an event stream may wait before the stream is dropped.
    socket_timeout: float = 30.0
    log_json: bool = False
    #: Fire times one backfill may cover at most.
    max_backfill_runs: int = 1000
    #: Deliveries a second each inbound webhook takes (and its burst); more get a 429.
    webhook_rate: float = 100.0
    #: Task logs followed at once (``?follow=true``), each on a thread of its own.
    max_log_followers: int = 64
    #: Seconds a trigger's idempotency key is held by the run it created.
    idempotency_ttl: float = 24 * 3600.0
    scheduler_expected: bool = False
    #: Follow the event log for changes made by other processes (``pipeline-core api``).
    follow_other_processes: bool = False
    #: Seconds between ``: keepalive`` comments on an idle event stream.
    sse_keepalive: float = 15.0
    #: Events a subscriber may fall behind by before it is disconnected.
    sse_queue_size: int = 10_000
    #: Where live event streams are written from: ``thread`` (this process) or ``process``
    #: (a process of their own that follows ``database_url``'s event log, so fanning events
    #: out to many subscribers never competes with an engine in this process).
    event_streams: Literal["thread", "process"] = "thread"
    database_url: str | None = None
