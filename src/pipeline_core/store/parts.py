"""The parts of the ``Store`` protocol: one protocol per aggregate (runs, task instances,
DAGs, pools, ...), each reached through the store (``store.runs.get_run(...)``). The
contracts in ``store.base`` hold for every method of every part."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from pipeline_core.events import Event
from pipeline_core.model import (
    DagRun,
    IdempotencyKey,
    TaskChange,
    TaskInstance,
    TaskKey,
    TaskSpec,
    Write,
)
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import (
    AttemptOutcome,
    Backfill,
    EventQuery,
    GridRun,
    Heartbeat,
    IdempotencyRecord,
    LogChunk,
    Notification,
    NotificationQuery,
    Page,
    Pool,
    RunQuery,
    RunStats,
    TaskInstanceQuery,
    TaskStats,
    TryClaim,
    TryReport,
    XComEntry,
)


class RunStore(Protocol):
    """Runs: creation (idempotent with a key), moves, notes, queries and statistics, and
    a wake-up's writes in one transaction."""

    def apply(self, writes: Sequence[Write], *, now: datetime | None = None) -> None:
        """Apply run creations, run and task moves, missed deadlines and expansions in order,
        in one transaction, each with its events; ``now`` stamps them all (default: the
        store's clock). Any failing write (``Conflict``, ``NotFound``,
        ``InvalidTransition``) undoes them all."""
        ...

    def create_run(
        self,
        run: DagRun,
        tasks: Sequence[TaskSpec],
        *,
        idempotency: IdempotencyKey | None = None,
        consumes: tuple[int, ...] = (),
    ) -> DagRun:
        """Create a run and all its task instances (``queued``, try 0) atomically; with
        ``consumes``, taking those asset updates out of the DAG's queue (``Conflict`` if one
        is not there).

        ``Conflict`` if ``(dag_id, run_id)`` exists, or a scheduled run with the same
        ``(dag_id, logical_date)`` exists, or another live run holds ``idempotency``'s key
        (stored with the run otherwise). Appends ``run.state_changed`` (from ``null``).
        """
        ...

    def set_run_note(self, dag_id: str, run_id: str, note: str | None) -> DagRun:
        """Replace a run's note; appends ``run.updated`` when it changed."""
        ...

    def find_idempotency_key(self, dag_id: str, key: str) -> IdempotencyRecord | None:
        """The live record of ``key`` on ``dag_id``: not expired, and its run still exists."""
        ...

    def get_run(self, dag_id: str, run_id: str) -> DagRun: ...

    def transition_run(
        self,
        dag_id: str,
        run_id: str,
        expected: RunState,
        new: RunState,
        *,
        reason: str | None = None,
    ) -> DagRun:
        """Compare-and-set a run's state with its event. Entering ``running`` stamps
        ``start_date`` (first time only); a finished state stamps ``end_date``; leaving a
        finished state clears it."""
        ...

    def delete_run(self, dag_id: str, run_id: str) -> None:
        """Delete a run with its task instances, XCom, logs, claims, idempotency key and missed
        deadline (its events and notifications stay)."""
        ...

    def query_runs(self, query: RunQuery) -> Page[DagRun]:
        """Filtered, ordered, paged runs with an exact total. Ties and NULLs (last) are
        ordered the same way on every backend."""
        ...

    def run_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> RunStats:
        """Statistics of the runs whose logical date is in ``[since, until]``, computed in
        the database (never by loading the runs)."""
        ...

    def latest_runs(self, dag_ids: Sequence[str]) -> dict[str, DagRun]:
        """The newest run (by logical date) of each DAG that has one — one query for all."""
        ...

    def count_active_runs(self, dag_id: str) -> int:
        """Runs of ``dag_id`` in ``running`` state."""
        ...


class TaskStore(Protocol):
    """Task instances: their moves, reads and statistics."""

    def transition_tasks(self, changes: Sequence[TaskChange]) -> list[TaskInstance]:
        """Apply compare-and-set transitions atomically, each with its ``task.state_changed``
        event. If any task is not in its ``expected`` state, ``Conflict`` and nothing is
        written; an illegal transition raises ``InvalidTransition`` the same way."""
        ...

    def get_task_instance(self, key: TaskKey) -> TaskInstance: ...

    def query_task_instances(self, query: TaskInstanceQuery) -> Page[TaskInstance]:
        """Task instances in task order within a run (a mapped task's instances in index
        order), newest run first across runs."""
        ...

    def mapped_counts(self, dag_id: str, run_id: str) -> dict[str, dict[str, int]]:
        """For each mapped task of the run that is expanded: how many instances are in
        each state (``{"load": {"success": 9, "running": 1}}``)."""
        ...

    def task_stats(
        self, dag_id: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[TaskStats]:
        """Per-task statistics over the same runs, by task id."""
        ...

    def grid(self, dag_id: str, limit: int) -> list[GridRun]:
        """A DAG's newest ``limit`` runs, newest first, each with its task instances (mapped
        tasks' instances counted by state, not listed): three queries whatever the count."""
        ...


class TaskDataStore(Protocol):
    """What tries leave behind: XCom values and logs."""

    def set_xcom(self, key: TaskKey, xcom_key: str, value: Any) -> XComEntry:
        """Store a JSON value (replacing one with the same key)."""
        ...

    def get_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry | None:
        """The entry, or ``None`` when absent (a stored JSON ``null`` is an entry whose
        ``value`` is ``None``)."""
        ...

    def get_mapped_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry:
        """The values the instances of the mapped task ``key`` pushed under ``xcom_key``,
        as one entry whose value lists them in map-index order (empty when none did)."""
        ...

    def list_xcom(self, key: TaskKey) -> list[XComEntry]: ...

    def list_run_xcom(self, dag_id: str, run_id: str) -> list[XComEntry]:
        """Every XCom entry of a run, oldest first (one query, whatever the run's size)."""
        ...

    def delete_xcom(self, key: TaskKey, xcom_key: str | None = None) -> int:
        """Delete one key, or every key of the task when ``xcom_key`` is ``None``."""
        ...

    def append_log(self, key: TaskKey, try_number: int, text: str) -> None:
        """Append to one try's log. Past the store's cap one truncation marker is written
        and the rest dropped."""
        ...

    def read_log(
        self, key: TaskKey, try_number: int, *, offset: int = 0, limit: int | None = None
    ) -> LogChunk: ...


class PoolStore(Protocol):
    """Pools of slots, and how many tries use each."""

    def create_pool(self, pool: Pool) -> Pool: ...

    def get_pool(self, name: str) -> Pool: ...

    def list_pools(self) -> list[Pool]:
        """Every pool by name; ``default_pool`` always exists."""
        ...

    def update_pool(
        self, name: str, *, slots: int | None = None, description: str | None = None,
        rate: str | None = None, burst: int | None = None,
    ) -> Pool:  # fmt: skip
        """``None`` keeps a value; ``rate=""`` takes the rate limit off."""
        ...

    def delete_pool(self, name: str) -> None:
        """``Conflict`` for ``default_pool``."""
        ...

    def pool_usage(self) -> Mapping[str, Mapping[TaskState, int]]:
        """Per pool: how many task instances are ``running`` and ``queued``."""
        ...


class HeartbeatStore(Protocol):
    """Heartbeats of engines, schedulers, standbys and workers."""

    def heartbeat(self, component_id: str, *, kind: str, hostname: str, pid: int) -> Heartbeat: ...

    def list_heartbeats(self, kind: str | None = None) -> list[Heartbeat]: ...

    def release_heartbeat(self, component_id: str) -> None:
        """Forget ``component_id``'s heartbeat: it stopped cleanly, so whatever it owned may
        be taken over at once. Quiet when there is none."""
        ...


class TryStore(Protocol):
    """Tries run by remote workers: claims and reports."""

    def claim_try(
        self, key: TaskKey, try_number: int, submission: str, worker_id: str
    ) -> TryClaim | None:
        """Claim one delivery of a try for ``worker_id`` while the task instance is running
        that try. Returns the claim that holds it, another worker's if that one came first;
        ``None`` when the instance is no longer running that try (cancelled, or a newer one),
        so there is nothing to run. A won claim appends ``task.claimed``."""
        ...

    def report_try(self, key: TaskKey, try_number: int, report: TryReport) -> Event:
        """Record how a remote try ended: its claim (``report.submission``) is marked
        reported and ``task.reported`` appended, in one transaction. The engine learns of
        the end from that event; the task instance's state is the engine's to write."""
        ...

    def list_claims(self, worker_id: str | None = None) -> list[TryClaim]:
        """Claims not yet pruned, oldest first (``worker_id``'s only, if given)."""
        ...

    def prune_claims(self) -> int:
        """Drop reported claims of tries the task instance has moved past; returns how many."""
        ...


class BackfillStore(Protocol):
    """Backfills and the run of each of their dates."""

    def create_backfill(
        self,
        dag_id: str,
        from_date: datetime,
        to_date: datetime,
        *,
        reprocess: str,
        max_active_runs: int,
        dates: Sequence[datetime],
    ) -> Backfill:
        """A ``running`` backfill of ``dates`` (its runs are made later, by the scheduler);
        appends ``backfill.updated``."""
        ...

    def get_backfill(self, backfill_id: int) -> Backfill:
        """The backfill with each date's run and run state (``NotFound``)."""
        ...

    def list_backfills(self, dag_id: str | None = None, state: str | None = None) -> list[Backfill]:
        """Backfills, oldest first, optionally of one DAG or in one state."""
        ...

    def set_backfill_run(self, backfill_id: int, logical_date: datetime, run_id: str) -> None:
        """Record the run made for a date (``Conflict`` if it has one)."""
        ...

    def end_backfill(self, backfill_id: int, state: str) -> Backfill:
        """``completed`` or ``cancelled``; ``Conflict`` unless running. Appends
        ``backfill.updated``."""
        ...


class EventStore(Protocol):
    """The event log: appends, reads, bounds and trimming."""

    def append_event(
        self,
        type: str,
        payload: Mapping[str, Any],
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> Event:
        """Append an event that no other store method emits (its own transaction)."""
        ...

    def read_events(self, query: EventQuery) -> list[Event]:
        """Events with ``seq`` after ``query.after_seq`` matching the filters, oldest first."""
        ...

    def event_bounds(self) -> tuple[int, int]:
        """(first retained seq, last seq); (0, 0) when the log is empty."""
        ...

    def trim_events(self, before_seq: int) -> int:
        """Drop events with ``seq`` < ``before_seq`` (retention); returns how many."""
        ...


class NotificationStore(Protocol):
    """The notification outbox. Notifications are written by the transactions that append
    the events causing them (``store.sql.outbox``); these are what reads and delivers them."""

    def list_notifications(self, query: NotificationQuery) -> Page[Notification]:
        """Newest first."""
        ...

    def get_notification(self, notification_id: str) -> Notification:
        """With its attempts (``NotFound``)."""
        ...

    def claim_due(self, now_ms: int, lease_ms: int, limit: int) -> list[Notification]:
        """Pending notifications due by ``now_ms`` that no deliverer holds, each now held
        for ``lease_ms`` (a deliverer that dies lets its hold lapse), oldest first."""
        ...

    def next_due_ms(self) -> int | None:
        """When the next pending notification is due (``None``: none pending)."""
        ...

    def record_attempts(self, outcomes: Sequence[tuple[str, AttemptOutcome]]) -> list[Notification]:
        """Record attempts and their outcomes (``(notification_id, outcome)``), all in one
        transaction; a final one (``delivered``/``failed``) appends
        ``notification.delivered`` or ``notification.failed``. ``NotFound`` if an id is
        unknown (nothing is recorded then)."""
        ...

    def redeliver(self, notification_id: str) -> Notification:
        """Make a notification pending and due now again, with the same id; appends
        ``notification.redelivery`` (``NotFound``; ``Conflict`` while it is pending)."""
        ...

    def notification_counts(self) -> dict[str, int]:
        """How many notifications are in each state."""
        ...
