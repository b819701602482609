"""Values the store reads and writes. Frozen dataclasses; timestamps are aware UTC datetimes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pipeline_core.state import RunState, TaskState

T = TypeVar("T")

RUN_TYPES = ("manual", "scheduled", "backfill")
RUN_ORDER_FIELDS = ("logical_date", "start_date", "end_date", "duration", "state")
EVENT_TYPES = ("task.state_changed", "run.state_changed", "dag.updated", "pool.updated")
DEFAULT_POOL_SLOTS = 16


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix and microseconds (sorts as text)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.isoformat(timespec="microseconds") + "Z"
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # without its "+00:00"


def duration_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000)


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
class DagRun:
    dag_id: str
    run_id: str
    state: RunState
    run_type: str
    logical_date: datetime
    conf: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    queued_at: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None

    @property
    def duration_ms(self) -> int | None:
        return duration_ms(self.start_date, self.end_date)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a new run needs to know of each task to create its task instance."""

    task_id: str
    pool: str = "default_pool"
    priority_weight: int = 1
    max_tries: int = 1


@dataclass(frozen=True, slots=True)
class TaskInstance:
    dag_id: str
    run_id: str
    task_id: str
    state: TaskState
    try_number: int = 0
    max_tries: int = 1
    pool: str = "default_pool"
    priority_weight: int = 1
    start_date: datetime | None = None
    end_date: datetime | None = None
    error: str | None = None

    @property
    def duration_ms(self) -> int | None:
        return duration_ms(self.start_date, self.end_date)

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.dag_id, self.run_id, self.task_id)


@dataclass(frozen=True, slots=True)
class TaskKey:
    dag_id: str
    run_id: str
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskChange:
    """One compare-and-set transition of a task instance.

    ``try_number`` and ``max_tries`` replace the stored ones when given (the engine bumps
    the try when it starts one, and grants more tries when a task is retried by hand).
    ``start_date``/``end_date`` follow from the transition: entering
    ``running`` stamps the start and clears the end, entering a finished state stamps the end,
    going back to ``queued`` clears both.
    """

    key: TaskKey
    expected: TaskState
    new: TaskState
    try_number: int | None = None
    max_tries: int | None = None
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class XComEntry:
    dag_id: str
    run_id: str
    task_id: str
    key: str
    value: Any
    size_bytes: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    slots: int
    description: str | None = None


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
class Event:
    """One entry of the append-only event log."""

    seq: int
    type: str
    timestamp: datetime
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            **self.payload,
            "timestamp": iso(self.timestamp),
        }


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
    run_types: tuple[str, ...] = ()
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
    """Task instances by run, by (dag, task) across runs (newest run first), or by state."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    states: tuple[TaskState, ...] = ()
    limit: int = 100
    offset: int = 0


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
