"""The DAG model: immutable ``DAG`` and ``Task`` values plus the small parsers they need.

Type-specific settings of a task (a shell ``command``, a python ``callable`` ...) live in
``Task.config``; the common fields are attributes. Nothing here performs I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, tzinfo
from functools import cached_property
from types import MappingProxyType
from typing import Any

from pipeline_core.dag.assets import AssetSchedule
from pipeline_core.dag.flow import ConcurrencyKey, RateLimit
from pipeline_core.dag.mapping import Expansion
from pipeline_core.dag.notify import Rule
from pipeline_core.dag.packed import PackedTasks, pickled
from pipeline_core.dag.webhooks import Webhook
from pipeline_core.state import TriggerRule

DEFAULT_POOL = "default_pool"
TASK_TYPES = ("noop", "shell", "python", "branch", "sensor", "trigger_dag")
#: The types whose try may wait between pokes, holding no worker and no slot meanwhile.
POKING_TYPES = ("sensor", "trigger_dag")
#: Where a task body runs: a warm worker process (default), a fresh interpreter per try
#: (``process``), a thread of the engine's own process (``thread``, trusted code only), or
#: a Celery worker (``celery``: an engine with a broker; elsewhere it runs as ``worker``).
LOCAL_EXECUTORS = ("worker", "process", "thread")
EXECUTORS = (*LOCAL_EXECUTORS, "celery")
#: Ids are path segments: ``.`` and ``..`` alone could never be addressed in a URL.
ID_PATTERN = re.compile(r"^(?!\.\.?$)[A-Za-z0-9_.\-]{1,250}$")
#: A run id may also hold ``:`` and ``+`` (the ones the scheduler makes carry a timestamp).
RUN_ID_PATTERN = re.compile(r"^(?!\.\.?$)[A-Za-z0-9_.:+\-]{1,250}$")
MAX_ID_LENGTH = 250
#: The date-times every input may name: what a ``datetime`` holds, a day clear of either
#: end, so that a value seen in any timezone (offsets up to ±24 h) or moved by a step stays
#: representable. Anything else is refused where it is parsed.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string such as ``90s``, ``5m``, ``1h30m``, ``250ms``.

    Raises ``ValueError`` with a readable message for anything else, including negatives.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"expected a duration (seconds or e.g. '90s', '1h30m'), got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        raise ValueError(f"expected a duration (seconds or e.g. '90s', '1h30m'), got {value!r}")
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"duration must be a finite number ≥ 0, got {value!r}")
    return seconds


def _parse_duration_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(
            f"invalid duration {text!r}: use seconds or units ms/s/m/h/d such as '90s' or '1h30m'"
        )
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB|K|M|G|T)?")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}  # fmt: skip


def parse_size(value: object) -> int:
    """Bytes from a whole number of bytes or a string such as ``512MiB``, ``2GB``, ``1.5G``.

    Raises ``ValueError`` with a readable message for anything else, including zero.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise ValueError(f"expected a size (bytes or e.g. '512MiB', '2GB'), got {value!r}")
    if size <= 0:
        raise ValueError(f"size must be > 0, got {value!r}")
    return size


def format_size(size: int) -> str:
    """``536870912`` → ``512MiB``: the largest binary unit that divides it, else bytes."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


def parse_datetime(value: object, tz: tzinfo = UTC) -> datetime:
    """A timezone-aware UTC ``datetime`` from a date, datetime or ISO 8601 string.

    Naive values are taken to be in ``tz`` (a DAG's timezone). Raises ``ValueError`` otherwise.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"invalid date/time {value!r}: use ISO 8601 such as 2026-01-01T06:00:00Z"
            ) from None
    else:
        raise ValueError(f"expected an ISO 8601 date/time, got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        utc: datetime | None = parsed.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 once in UTC
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise ValueError(
            f"date/time {value!r:.60} is outside the supported range "
            "0001-01-02T00:00:00Z to 9999-12-30T23:59:59.999999Z"
        )
    return utc


def invalid_id_reason(value: object) -> str | None:
    """Why ``value`` is not a valid DAG/task/pool id, or ``None`` when it is."""
    if not isinstance(value, str):
        return f"id must be a string, got {type(value).__name__}"
    if not value:
        return "id must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"id is {len(value)} characters long; the maximum is {MAX_ID_LENGTH}"
    if value in (".", ".."):
        return f"id {value!r} cannot be addressed in a URL"
    if not ID_PATTERN.fullmatch(value):
        return f"invalid id {value!r:.60}: use only letters, digits, '_', '-' and '.'"
    return None


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Task:
    """One node of a DAG. ``config`` holds the settings specific to ``type``."""

    task_id: str
    type: str = "noop"
    depends_on: tuple[str, ...] = ()
    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retries: int = 0
    retry_delay: float = 0.0
    retry_exponential_backoff: bool = False
    max_retry_delay: float | None = None
    timeout: float | None = None
    pool: str = DEFAULT_POOL
    priority_weight: int = 1
    executor: str | None = None
    #: Address-space limit of the try's process in bytes (worker and process executors).
    memory_limit: int | None = None
    #: CPU seconds the try may use (worker and process executors).
    cpu_time_limit: float | None = None
    #: Notification rules of this task's events (``default_args.notify`` unless its own).
    notify: tuple[Rule, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    #: How the task is mapped over values known at run time (``None``: one instance).
    expansion: Expansion | None = None
    #: The assets its success updates (URIs, maybe with run templates).
    outlets: tuple[str, ...] = ()
    #: At most so many tries at once per rendered key (``concurrency: {key, limit}``) ...
    concurrency_key: ConcurrencyKey | None = None
    #: ... and tries start no faster than this token bucket lets them.
    rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "depends_on", tuple(self.depends_on))
        object.__setattr__(self, "config", _frozen(self.config))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return _task_key(self) == _task_key(other)

    __hash__ = None  # type: ignore[assignment]


def _task_key(task: Task) -> tuple[Any, ...]:
    return (
        task.task_id,
        task.type,
        task.depends_on,
        task.trigger_rule,
        task.retries,
        task.retry_delay,
        task.retry_exponential_backoff,
        task.max_retry_delay,
        task.timeout,
        task.pool,
        task.priority_weight,
        task.executor,
        task.memory_limit,
        task.cpu_time_limit,
        task.notify,
        dict(task.config),
        task.expansion,
        task.outlets,
        task.concurrency_key,
        task.rate_limit,
    )


@dataclass(frozen=True)
class DAG:
    """A validated, immutable workflow definition. Task order is declaration order. Its
    tasks may be kept packed while nothing reads them (``dag.packed``)."""

    dag_id: str
    #: A descriptor, not a shared default: each DAG's tuple lives in the DAG itself.
    tasks: PackedTasks = PackedTasks()  # noqa: RUF009
    description: str | None = None
    schedule: str | None = None
    timezone: str = "UTC"
    start_date: datetime | None = None
    end_date: datetime | None = None
    catchup: bool = False
    max_active_runs: int = 1
    concurrency: int = 16
    tags: tuple[str, ...] = ()
    default_args: Mapping[str, Any] = field(default_factory=dict)
    is_paused: bool = False
    fileloc: str | None = None
    #: Notification rules of the DAG's runs, tasks and deadline.
    notify: tuple[Rule, ...] = ()
    #: Seconds a run may take from its start before ``deadline.missed``.
    deadline: float | None = None
    #: What a missed deadline does besides notifying: ``continue`` or ``cancel`` the run.
    deadline_action: str = "continue"
    #: The assets whose updates start runs (beside or instead of ``schedule``, the cron).
    assets: AssetSchedule | None = None
    #: Signed deliveries that start runs (``POST /api/v1/webhooks/<dag_id>/<name>``).
    webhooks: tuple[Webhook, ...] = ()
    #: At most so many active runs per rendered key (``concurrency: {key, limit, ...}``).
    run_concurrency: ConcurrencyKey | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))
        object.__setattr__(self, "default_args", _frozen(self.default_args))

    @cached_property
    def task_dict(self) -> Mapping[str, Task]:
        """Tasks by id (the last one wins if ids repeat; validation reports that)."""
        return MappingProxyType({task.task_id: task for task in self.tasks})

    @cached_property
    def version(self) -> str:
        """The definition's content hash (``dag.serialize.definition_hash``): the DAG version
        a run is made with and keeps. Computed once per DAG object."""
        from pipeline_core.dag.serialize import dag_to_dict, definition_hash  # imports this

        return definition_hash(dag_to_dict(self))

    @cached_property
    def executors(self) -> frozenset[str | None]:
        """The executors its tasks name (``None``: the default), kept with the DAG when its
        tasks are packed."""
        return frozenset(task.executor for task in self.tasks)

    def __getstate__(self) -> dict[str, Any]:
        return pickled(vars(self))

    def get_task(self, task_id: str) -> Task:
        return self.task_dict[task_id]

    @property
    def task_ids(self) -> list[str]:
        return [task.task_id for task in self.tasks]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DAG):
            return NotImplemented
        return _dag_key(self) == _dag_key(other)

    __hash__ = None  # type: ignore[assignment]


def _dag_key(dag: DAG) -> tuple[Any, ...]:
    return (
        dag.dag_id,
        dag.tasks,
        dag.description,
        dag.schedule,
        dag.timezone,
        dag.start_date,
        dag.end_date,
        dag.catchup,
        dag.max_active_runs,
        dag.concurrency,
        dag.tags,
        dict(dag.default_args),
        dag.is_paused,
        dag.notify,
        dag.deadline,
        dag.deadline_action,
        dag.assets,
        dag.webhooks,
        dag.run_concurrency,
    )
