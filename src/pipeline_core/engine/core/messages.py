"""What the engine's core is told (messages) and what it answers (effects). Frozen values.

The core (``engine.decide``) turns one message and the current moment into effects; the
engine's loop (``engine.orchestrator``) writes the store effects of a wake-up in one
transaction, then hands tries to the executor and timers to its timer heap. Whatever the
core needs from the store arrives inside a message (a ``RunSnapshot``), so deciding never
reads, writes or waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pipeline_core.dag.model import DAG
from pipeline_core.engine.core.jobs import Completion, Job
from pipeline_core.model import (
    CreateRun,
    DagRun,
    ExpandTask,
    MissDeadline,
    MoveRun,
    NoteWait,
    SwitchVersion,
    TaskChange,
    TaskInstance,
    TaskKey,
    UpdateAssets,
)
from pipeline_core.state import RunState, TaskState


@dataclass(frozen=True, slots=True)
class Moment:
    """When a message is decided: wall time for what is stored, a monotonic reading for
    timers and budgets."""

    wall: datetime
    monotonic: float


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """A run as the store holds it, with its task instances (mapped tasks' instances
    too)."""

    run: DagRun
    task_instances: tuple[TaskInstance, ...]
    #: The DAG version the run runs, when it is not the latest the core holds.
    dag: DAG | None = None

    @property
    def tasks(self) -> list[TaskInstance]:
        """One instance per task: the instances of mapped tasks left out."""
        return [ti for ti in self.task_instances if ti.map_index < 0]

    @property
    def instances(self) -> list[TaskInstance]:
        """The instances of mapped tasks."""
        return [ti for ti in self.task_instances if ti.map_index >= 0]


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trigger:
    """Start tracking a new run (``create`` is written by the same commit)."""

    create: CreateRun


@dataclass(frozen=True, slots=True)
class Cancel:
    dag_id: str
    run_id: str
    #: The run as stored, when the core does not hold it.
    snapshot: RunSnapshot | None = None


@dataclass(frozen=True, slots=True)
class Retry:
    dag_id: str
    run_id: str
    task_ids: tuple[str, ...] | None = None
    include_downstream: bool = True
    snapshot: RunSnapshot | None = None
    #: One instance of the one mapped task of ``task_ids`` (``None``: all of them).
    map_index: int | None = None
    #: Run the DAG's latest version from now on instead of the run's own.
    use_latest: bool = False


@dataclass(frozen=True, slots=True)
class MarkRun:
    """Set a run's state by hand: its unfinished tasks (and, marking ``success``, its failed
    ones) take the matching state; running tries are killed."""

    dag_id: str
    run_id: str
    state: RunState
    snapshot: RunSnapshot | None = None


@dataclass(frozen=True, slots=True)
class MarkTask:
    """Set one task instance's state by hand; a running try is killed, and its downstream
    follows the trigger rules."""

    dag_id: str
    run_id: str
    task_id: str
    state: TaskState
    snapshot: RunSnapshot | None = None
    #: One instance of a mapped task (-1: the task, with all its instances).
    map_index: int = -1


@dataclass(frozen=True, slots=True)
class Pause:
    dag_id: str
    paused: bool


@dataclass(frozen=True, slots=True)
class PoolChanged:
    """A pool's size (``None``: it was deleted) and rate limit (``rate`` tries a second,
    ``burst`` at once; ``None``: none)."""

    name: str
    slots: int | None
    rate: float | None = None
    burst: int = 1


@dataclass(frozen=True, slots=True)
class TryCompleted:
    completion: Completion


class TimerKind(StrEnum):
    RETRY = "retry"  # a try's retry delay is over
    POKE = "poke"  # a sensor's poke interval is over


@dataclass(frozen=True, slots=True)
class TokensDue:
    """A rate limit's bucket has a token for a try that waits for one."""


@dataclass(frozen=True, slots=True)
class TimerFired:
    kind: TimerKind
    key: TaskKey
    try_number: int


@dataclass(frozen=True, slots=True)
class Resolved:
    """The values of a ready mapped task, as the shell read them: they make ``count``
    instances, or cannot be mapped (``error``: not a list, too many, missing)."""

    key: TaskKey
    count: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeadlineDue:
    """A run's deadline has come: unless the run ended, it missed it."""

    dag_id: str
    run_id: str
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Resume:
    """Take over a run the store holds unfinished (after a restart, or created by another
    process). Its ``running`` tries have no engine any more: they are orphaned, except those
    of ``adopt`` (task instances), which still run elsewhere (a Celery worker) and will
    report."""

    snapshot: RunSnapshot
    adopt: frozenset[TaskKey] = frozenset()


@dataclass(frozen=True, slots=True)
class Resync:
    """A write was lost to another writer: rebuild what the core holds of this run."""

    snapshot: RunSnapshot


@dataclass(frozen=True, slots=True)
class Forget:
    """A trigger whose commit failed: drop the run as if it had never been triggered."""

    dag_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class DagsChanged:
    dags: Mapping[str, DAG]
    #: Paused state of the DAGs, as stored.
    paused: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop starting tries (shutdown begins)."""


@dataclass(frozen=True, slots=True)
class Abandon:
    """Shutdown: stop every try still held; each becomes ``up_for_retry`` or ``failed``."""

    reason: str = "engine shutdown"


Message = (
    Trigger
    | Cancel
    | Retry
    | MarkRun
    | MarkTask
    | Pause
    | PoolChanged
    | TryCompleted
    | TimerFired
    | TokensDue
    | Resolved
    | DeadlineDue
    | Resume
    | Resync
    | Forget
    | DagsChanged
    | Drain
    | Abandon
)


# --- effects -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitTry:
    """Hand a try to the executor (after the commit that marked it running)."""

    job: Job


@dataclass(frozen=True, slots=True)
class KillTry:
    key: TaskKey
    try_number: int


@dataclass(frozen=True, slots=True)
class ResolveMapping:
    """Read the values the mapped task ``key`` of ``run`` maps over and answer, in the same
    wake-up, with ``Resolved`` (the shell does it before the wake-up commits)."""

    key: TaskKey
    dag: DAG
    run: DagRun


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Deliver ``fire`` once the monotonic clock reaches ``due``."""

    due: float
    fire: TimerFired | DeadlineDue | TokensDue


Effect = (
    CreateRun
    | MoveRun
    | TaskChange
    | MissDeadline
    | ExpandTask
    | UpdateAssets
    | SwitchVersion
    | NoteWait
    | SubmitTry
    | KillTry
    | StartTimer
    | ResolveMapping
)
STORE_EFFECTS = (
    CreateRun,
    MoveRun,
    TaskChange,
    MissDeadline,
    ExpandTask,
    UpdateAssets,
    SwitchVersion,
    NoteWait,
)
