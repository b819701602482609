"""The domain values every layer shares: runs, task instances, the writes that change them,
events, and what a transition stamps. Pure: no I/O, no clock (``utcnow`` is the default
clock the edges pass in). The store persists them and the engine decides on them; neither
owns them, so both import them from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pipeline_core.errors import Conflict
from pipeline_core.state import (
    FINISHED_RUN_STATES,
    FINISHED_TASK_STATES,
    RunState,
    TaskState,
    run_transition,
    transition,
)

if TYPE_CHECKING:
    from pipeline_core.dag.model import DAG


class RunType(StrEnum):
    """Why a run exists: triggered by hand, by its schedule, by a backfill, or by updates of
    the assets it is scheduled on."""

    MANUAL = "manual"
    SCHEDULED = "scheduled"
    BACKFILL = "backfill"
    ASSET_TRIGGERED = "asset_triggered"


RUN_TYPES = tuple(t.value for t in RunType)


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
    """Whole milliseconds from ``start`` to ``end``, half a millisecond rounded up, in
    integer arithmetic (so the database computes the very same figure)."""
    if start is None or end is None:
        return None
    return ((end - start) // timedelta(microseconds=1) + 500) // 1000


@dataclass(frozen=True, slots=True)
class TaskKey:
    """One task instance; ``map_index`` is -1 but for the instances of a mapped task."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @property
    def parent(self) -> TaskKey:
        """The mapped task's own instance (``map_index`` -1) this key belongs to."""
        return TaskKey(self.dag_id, self.run_id, self.task_id) if self.map_index >= 0 else self

    def instance(self, map_index: int) -> TaskKey:
        return TaskKey(self.dag_id, self.run_id, self.task_id, map_index)


@dataclass(frozen=True, slots=True)
class DagRun:
    dag_id: str
    run_id: str
    state: RunState
    run_type: RunType
    logical_date: datetime
    conf: Mapping[str, Any] = field(default_factory=dict)
    note: str | None = None
    queued_at: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    #: Higher runs start first among a DAG's waiting runs, and their tries first in a pool.
    priority: int = 0
    #: The DAG version (definition hash) the run was made with, and runs with until a
    #: retry or clear asks for the latest; ``None`` for runs made before versions were kept.
    dag_version: str | None = None

    @property
    def duration_ms(self) -> int | None:
        return duration_ms(self.start_date, self.end_date)

    @property
    def key(self) -> tuple[str, str]:
        return (self.dag_id, self.run_id)


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
    map_index: int = -1

    @property
    def duration_ms(self) -> int | None:
        return duration_ms(self.start_date, self.end_date)

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.dag_id, self.run_id, self.task_id, self.map_index)


@dataclass(frozen=True, slots=True)
class TriggerRequest:
    """What starts a run, whoever asks (API, CLI, scheduler, backfill, another process):
    one value through every ``Control``; ``conf`` and ``run_id`` by position or name."""

    dag_id: str
    conf: Mapping[str, Any] | None = None
    _: KW_ONLY
    run_id: str | None = None
    #: Defaults to the moment the run is made.
    logical_date: datetime | None = None
    note: str | None = None
    run_type: RunType | str = RunType.MANUAL
    idempotency: IdempotencyKey | None = None
    #: The waiting asset updates (ids) the run consumes (see ``CreateRun.consumes``).
    consumes: tuple[int, ...] = ()
    #: Higher first (see ``DagRun.priority``).
    priority: int = 0

    def create(
        self, specs: tuple[TaskSpec, ...], now: datetime, dag_version: str | None = None
    ) -> CreateRun:
        """The write that makes the run, with ``specs`` as its task instances, of the DAG
        version ``dag_version``."""
        return new_run(
            self.dag_id,
            specs,
            now=now,
            conf=self.conf,
            run_id=self.run_id,
            logical_date=self.logical_date,
            note=self.note,
            run_type=self.run_type,
            idempotency=self.idempotency,
            consumes=self.consumes,
            priority=self.priority,
            dag_version=dag_version,
        )


def new_run(
    dag_id: str,
    specs: tuple[TaskSpec, ...],
    *,
    now: datetime,
    conf: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    logical_date: datetime | None = None,
    note: str | None = None,
    run_type: RunType | str = RunType.MANUAL,
    idempotency: IdempotencyKey | None = None,
    consumes: tuple[int, ...] = (),
    priority: int = 0,
    dag_version: str | None = None,
) -> CreateRun:
    """A queued run and its task instances, as one write. The run id defaults to
    ``<run_type>__<logical date>`` (Airflow's form); the logical date to ``now``."""
    kind = RunType(run_type)
    logical = logical_date or now
    run = DagRun(
        dag_id=dag_id,
        run_id=run_id or f"{kind.value}__{iso(logical)}",
        state=RunState.QUEUED,
        run_type=kind,
        logical_date=logical,
        conf=dict(conf or {}),
        note=note,
        queued_at=now,
        priority=priority,
        dag_version=dag_version,
    )
    return CreateRun(run, specs, idempotency, consumes)


def task_specs(dag: DAG) -> tuple[TaskSpec, ...]:
    """The task instances a run of ``dag`` starts with."""
    return tuple(TaskSpec(t.task_id, t.pool, t.priority_weight, t.retries + 1) for t in dag.tasks)


# --- the writes that change runs and task instances ------------------------------------


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A trigger's idempotency key: stored with the run it creates, in the same transaction,
    and held for ``ttl_seconds``. ``fingerprint`` identifies the request's body, so a repeat
    can be told from a different request that reuses the key."""

    key: str
    fingerprint: str
    ttl_seconds: float


@dataclass(frozen=True, slots=True)
class CreateRun:
    """Create a run and all its task instances (``queued``, try 0); with ``idempotency``,
    ``Conflict`` if another live run holds the key. ``consumes``: the asset updates waiting
    for the DAG that the run uses up, in the same transaction — ``Conflict`` if one is not
    waiting any more (another run took it), so an update starts one run at most."""

    run: DagRun
    tasks: tuple[TaskSpec, ...]
    idempotency: IdempotencyKey | None = None
    consumes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MoveRun:
    """Compare-and-set a run's state."""

    dag_id: str
    run_id: str
    expected: RunState
    new: RunState
    reason: str | None = None
    #: A mark made by hand: any ``MARKABLE_RUN_STATES`` move.
    by_hand: bool = False


@dataclass(frozen=True, slots=True)
class TaskChange:
    """One compare-and-set transition of a task instance.

    ``try_number`` and ``max_tries`` replace the stored ones when given (the engine bumps
    the try when it starts one, and grants more tries when a task is retried by hand).
    ``start_date``/``end_date`` follow from the transition (see ``apply_task_change``).
    """

    key: TaskKey
    expected: TaskState
    new: TaskState
    try_number: int | None = None
    max_tries: int | None = None
    error: str | None = None
    reason: str | None = None
    #: A mark made by hand: any ``MARKABLE_TASK_STATES`` move.
    by_hand: bool = False


@dataclass(frozen=True, slots=True)
class MissDeadline:
    """Record that a run did not end by its deadline, with a ``deadline.missed`` event —
    once: recording it again (after a restart or a failover) writes nothing."""

    dag_id: str
    run_id: str
    deadline: datetime
    #: What the DAG does about it: ``continue`` or ``cancel``.
    action: str = "continue"


@dataclass(frozen=True, slots=True)
class ExpandTask:
    """Create the instances ``first … count-1`` of a mapped task, queued and untried, with
    one ``task.expanded`` event. ``key`` is the mapped task's own instance (``map_index``
    -1), which stays as their summary. An index is created once (again is a ``Conflict``);
    ``first`` > 0 grows a task mapped before (its upstream, run again, gave more values)."""

    key: TaskKey
    count: int
    max_tries: int = 1
    pool: str = "default_pool"
    priority_weight: int = 1
    first: int = 0


@dataclass(frozen=True, slots=True)
class UpdateAssets:
    """``key`` succeeded and updated ``uris``: an ``asset.updated`` event each (with the
    ``asset_extra`` XCom the try pushed, if any), waiting for every DAG scheduled on it."""

    key: TaskKey
    uris: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SwitchVersion:
    """A run runs DAG version ``version`` from now on (a retry asking for the latest); the
    tasks that version adds to the run are created queued (``tasks``)."""

    dag_id: str
    run_id: str
    version: str
    tasks: tuple[TaskSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class NoteWait:
    """Something began to wait for a flow limit — a run for its DAG's concurrency key, tries
    for a task's key or a token of a task's or a pool's rate — as one ``flow.waiting`` event
    (``reason``, and ``detail`` naming the key); nothing else changes."""

    dag_id: str | None
    reason: str
    detail: Mapping[str, Any]
    run_id: str | None = None


Write = (
    CreateRun | MoveRun | TaskChange | MissDeadline | ExpandTask | UpdateAssets | SwitchVersion
    | NoteWait
)  # fmt: skip


def apply_task_change(current: TaskInstance, change: TaskChange, now: datetime) -> TaskInstance:
    """The task instance after ``change``: entering ``running`` stamps the start and clears
    the end, entering a finished state (or ``up_for_retry``) stamps the end, going back to
    ``queued`` clears both. Raises ``Conflict``/``InvalidTransition``."""
    if current.state is not change.expected:
        raise Conflict(
            f"task '{current.task_id}' of run '{current.run_id}' is '{current.state.value}', "
            f"not '{change.expected.value}' (another writer changed it)",
            details={"current_state": current.state.value, "expected": change.expected.value},
        )
    new = transition(current.state, change.new, by_hand=change.by_hand)
    start, end = current.start_date, current.end_date
    if new is TaskState.RUNNING:
        start, end = now, None
    elif new is TaskState.QUEUED:
        start, end = None, None
    elif new in FINISHED_TASK_STATES or new is TaskState.UP_FOR_RETRY:
        end = now
    error = change.error if new in (TaskState.FAILED, TaskState.UP_FOR_RETRY) else None
    if new is TaskState.FAILED and change.error is None:
        error = current.error
    try_number = current.try_number if change.try_number is None else change.try_number
    max_tries = current.max_tries if change.max_tries is None else change.max_tries
    return replace(
        current,
        state=new,
        start_date=start,
        end_date=end,
        error=error,
        try_number=try_number,
        max_tries=max_tries,
    )


def apply_run_change(
    current: DagRun, expected: RunState, new: RunState, now: datetime, *, by_hand: bool = False
) -> DagRun:
    """The run after a move: entering ``running`` stamps ``start_date`` (the first time only),
    a finished state stamps ``end_date``, leaving one clears it."""
    if current.state is not expected:
        raise Conflict(
            f"run '{current.run_id}' is '{current.state.value}', not '{expected.value}'",
            details={"current_state": current.state.value, "expected": expected.value},
        )
    run_transition(current.state, new, by_hand=by_hand)
    start, end = current.start_date, current.end_date
    if new is RunState.RUNNING:
        start, end = start or now, None
    elif new is RunState.QUEUED:
        end = None
    elif new in FINISHED_RUN_STATES:
        end = now
    return replace(current, state=new, start_date=start, end_date=end)
