"""What the store reads and writes besides the domain values of ``pipeline_core.model``:
DAG records, pools, XCom, logs, heartbeats, queries, pages and statistics. Frozen
dataclasses; timestamps are aware UTC datetimes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pipeline_core.credentials.connections import Connection
from pipeline_core.model import DagRun, RunType, TaskInstance, TaskKey
from pipeline_core.state import RunState, TaskState

T = TypeVar("T")

RUN_ORDER_FIELDS = ("logical_date", "start_date", "end_date", "duration", "state")
DEFAULT_POOL_SLOTS = 16


@dataclass(frozen=True, slots=True)
class DagRecord:
    """What the store knows of a DAG: its metadata, pause state and serialised definition."""

    dag_id: str
    is_paused: bool = False
    is_active: bool = True
    fileloc: str | None = None
    schedule: str | None = None
    timezone: str = "UTC"
    description: str | None = None
    tags: tuple[str, ...] = ()
    definition_hash: str | None = None
    definition: Mapping[str, Any] | None = None
    task_count: int = 0
    last_parsed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ImportError_:
    """A DAG file that failed to load: every issue (message, line, field path) and when."""

    filename: str
    issues: tuple[Mapping[str, Any], ...]
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class XComEntry:
    dag_id: str
    run_id: str
    task_id: str
    key: str
    value: Any
    size_bytes: int
    timestamp: datetime
    map_index: int = -1


@dataclass(frozen=True, slots=True)
class Variable:
    key: str
    value: Any
    is_secret: bool
    description: str | None
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StoredConnection:
    connection: Connection
    description: str | None
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AssetUpdate:
    """One update of an asset: its id is its ``asset.updated`` event's seq; a task's own
    updates name the task (an update posted through the API names none)."""

    id: int
    uri: str
    extra: Mapping[str, Any]
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class AssetInfo:
    uri: str
    updates: int
    last_update: datetime | None
    #: ``dag_id.task_id`` of the tasks whose outlets name it (without templates).
    producers: list[str]
    #: The DAGs scheduled on it.
    consumers: list[str]


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    slots: int
    description: str | None = None
    #: At most this many tries of the pool start per second, minute or hour (``"100/m"``),
    #: with ``burst`` of them at once after a quiet spell; ``None``: no rate limit.
    rate: str | None = None
    burst: int = 1


@dataclass(frozen=True, slots=True)
class LogChunk:
    """A slice of one try's log: ``text`` from byte ``offset`` to ``next_offset``."""

    text: str
    offset: int
    next_offset: int
    size: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class Heartbeat:
    component_id: str
    kind: str
    hostname: str
    pid: int
    last_heartbeat: datetime


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A live idempotency key: the run it created and the fingerprint of the request."""

    dag_id: str
    key: str
    run_id: str
    fingerprint: str
    created_at: datetime
    expires_at: datetime


BACKFILL_STATES = ("running", "completed", "cancelled")
REPROCESS = ("none", "failed", "all")


@dataclass(frozen=True, slots=True)
class BackfillDate:
    """One logical date of a backfill and the run made for it (``None``: not yet)."""

    logical_date: datetime
    run_id: str | None = None
    run_state: str | None = None


@dataclass(frozen=True, slots=True)
class Backfill:
    """Runs of a DAG for past fire times, started ``max_active_runs`` at a time by the
    scheduler: ``running`` until each date has a finished run (``completed``), or
    ``cancelled``."""

    id: int
    dag_id: str
    from_date: datetime
    to_date: datetime
    reprocess: str
    max_active_runs: int
    state: str
    created_at: datetime
    completed_at: datetime | None
    dates: tuple[BackfillDate, ...] = ()

    @property
    def active(self) -> int:
        """Its runs that are queued or running."""
        return sum(1 for d in self.dates if d.run_state in ("queued", "running"))

    @property
    def waiting(self) -> list[datetime]:
        """Its dates with no run yet, in order."""
        return [d.logical_date for d in self.dates if d.run_id is None]


@dataclass(frozen=True, slots=True)
class TryClaim:
    """A remote worker's hold on one delivery of a try (``submission``: a sensor's try is
    sent once per poke): only the holder runs it. ``reported_at`` is set once its end is
    reported; the claim stays until the task instance moves on, so a late duplicate of the
    message finds it and is dropped."""

    key: TaskKey
    try_number: int
    submission: str
    worker_id: str
    claimed_at: datetime
    reported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TryReport:
    """How a try that ran elsewhere ended, as its worker (or whoever saw it lost) tells it:
    ``outcome`` is ``success``, ``failed``, ``timeout`` or ``cancelled``; ``follow`` and
    ``poke_ok`` are a branch's and a sensor's result."""

    outcome: str
    error: str | None = None
    follow: tuple[str, ...] | None = None
    poke_ok: bool = True
    worker_id: str | None = None
    #: The delivery this report ends (``TryClaim.submission``).
    submission: str | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters, order and page of a runs query. ``order_by`` takes a ``-`` prefix for descending."""

    dag_id: str | None = None
    states: tuple[RunState, ...] = ()
    run_types: tuple[RunType, ...] = ()
    logical_date_gte: datetime | None = None
    logical_date_lte: datetime | None = None
    start_date_gte: datetime | None = None
    start_date_lte: datetime | None = None
    end_date_gte: datetime | None = None
    end_date_lte: datetime | None = None
    order_by: str = "-logical_date"
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if self.order_by.lstrip("-") not in RUN_ORDER_FIELDS:
            raise ValueError(
                f"cannot order runs by {self.order_by!r} (use {', '.join(RUN_ORDER_FIELDS)})"
            )
        if self.limit < 0 or self.offset < 0:
            raise ValueError("limit and offset must be ≥ 0")


@dataclass(frozen=True, slots=True)
class TaskInstanceQuery:
    """Task instances by run, by (dag, task) across runs (newest run first), or by state;
    ``mapped``: only map index -1 (``False``, the default: each task once, as a run's task
    list shows it), only the instances of mapped tasks (``True``), or both (``None``)."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    states: tuple[TaskState, ...] = ()
    limit: int = 100
    offset: int = 0
    mapped: bool | None = False


@dataclass(frozen=True, slots=True)
class EventQuery:
    after_seq: int = 0
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    types: tuple[str, ...] = ()
    limit: int = 1000


@dataclass(frozen=True, slots=True)
class RunStats:
    """Run statistics of one DAG; durations in ms over runs that finished, percentiles by
    nearest rank. ``success_rate`` is successes over finished runs (0 when none)."""

    total: int
    by_state: Mapping[str, int]
    success_rate: float
    duration_avg: float | None
    duration_min: int | None
    duration_max: int | None
    duration_p50: int | None
    duration_p90: int | None
    duration_p99: int | None


@dataclass(frozen=True, slots=True)
class TaskStats:
    """Per-task statistics over the task's tries that started (``try_number`` > 0)."""

    task_id: str
    runs: int
    avg_duration_ms: float | None
    failure_rate: float
    retry_rate: float
    last_success: datetime | None
    last_failure: datetime | None


PERCENTILES = (50, 90, 99)


def nearest_rank(count: int, q: int) -> int:
    """Zero-based index of the q-th percentile among ``count`` sorted values."""
    return max(0, -(-q * count // 100) - 1)


NOTIFICATION_STATES = ("pending", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try at delivering a notification: the receiver's status (``None`` when none
    answered), the error, and how long it took."""

    number: int
    at: datetime
    status: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification of the outbox: what caused it (the event's ``seq`` and kind), the
    rule and target it goes to (references unresolved), the payload, and how delivery goes.
    ``id`` is the delivery id every attempt carries."""

    id: str
    seq: int
    event: str
    dag_id: str
    run_id: str | None
    task_id: str | None
    try_number: int | None
    rule: str
    target_kind: str
    target: Mapping[str, Any]
    payload: Mapping[str, Any]
    state: str
    attempts: int
    last_error: str | None
    last_status: int | None
    created_at: datetime
    due_ms: int
    delivered_at: datetime | None
    history: tuple[DeliveryAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class NotificationQuery:
    dag_id: str | None = None
    run_id: str | None = None
    state: str | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one delivery attempt came to: ``delivered``, ``failed`` (final), or ``pending``
    again at ``due_ms``."""

    state: str
    status: int | None
    error: str | None
    duration_ms: int
    due_ms: int = 0


@dataclass(frozen=True, slots=True)
class GridRun:
    """A run as a DAG's grid shows it: its task instances, and for each mapped task how
    many instances are in each state."""

    run: DagRun
    task_instances: tuple[TaskInstance, ...]
    mapped: Mapping[str, Mapping[str, int]]
