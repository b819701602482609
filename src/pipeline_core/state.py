"""Task and run states, the transition table, and trigger-rule evaluation. Pure: no I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from enum import StrEnum

from pipeline_core.errors import InvalidTransition


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UP_FOR_RETRY = "up_for_retry"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    REMOVED = "removed"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_FAILED = "all_failed"
    ALL_DONE = "all_done"
    ONE_SUCCESS = "one_success"
    ONE_FAILED = "one_failed"
    NONE_FAILED = "none_failed"
    NONE_SKIPPED = "none_skipped"
    ALWAYS = "always"


class Readiness(StrEnum):
    """What a trigger rule says about a waiting task given its upstream states."""

    READY = "ready"
    WAIT = "wait"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


_T = TaskState
ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    _T.QUEUED: frozenset({_T.RUNNING, _T.SKIPPED, _T.UPSTREAM_FAILED, _T.REMOVED, _T.CANCELLED}),
    # A mapped task runs while its instances do, and is skipped when all of them were.
    _T.RUNNING: frozenset({_T.SUCCESS, _T.FAILED, _T.UP_FOR_RETRY, _T.CANCELLED, _T.SKIPPED}),
    _T.UP_FOR_RETRY: frozenset({_T.QUEUED, _T.FAILED, _T.CANCELLED}),
    _T.FAILED: frozenset({_T.QUEUED}),
    _T.UPSTREAM_FAILED: frozenset({_T.QUEUED}),
    _T.SKIPPED: frozenset({_T.QUEUED}),
    _T.CANCELLED: frozenset({_T.QUEUED}),
    _T.SUCCESS: frozenset({_T.QUEUED}),
    _T.REMOVED: frozenset(),
}

_R = RunState
RUN_ALLOWED: dict[RunState, frozenset[RunState]] = {
    _R.QUEUED: frozenset({_R.RUNNING, _R.CANCELLED}),
    _R.RUNNING: frozenset({_R.SUCCESS, _R.FAILED, _R.CANCELLED}),
    _R.SUCCESS: frozenset({_R.RUNNING, _R.QUEUED}),
    _R.FAILED: frozenset({_R.RUNNING, _R.QUEUED}),
    _R.CANCELLED: frozenset({_R.RUNNING, _R.QUEUED}),
}

#: States a person may set by hand (``PATCH``: mark a task or a run), from any state but
#: ``removed``, beyond the moves the engine itself makes.
MARKABLE_TASK_STATES = frozenset({_T.SUCCESS, _T.FAILED, _T.SKIPPED})
MARKABLE_RUN_STATES = frozenset({_R.SUCCESS, _R.FAILED})

#: States a task instance never leaves without an explicit clear/retry.
FINISHED_TASK_STATES = frozenset(
    {_T.SUCCESS, _T.FAILED, _T.UPSTREAM_FAILED, _T.SKIPPED, _T.CANCELLED, _T.REMOVED}
)
FINISHED_RUN_STATES = frozenset({_R.SUCCESS, _R.FAILED, _R.CANCELLED})
#: Task states that count as a failure for trigger rules and run outcome.
FAILURE_STATES = frozenset({_T.FAILED, _T.UPSTREAM_FAILED})


def can_transition(current: TaskState, new: TaskState) -> bool:
    """Whether a task instance may move from ``current`` to ``new``."""
    return new in ALLOWED[current]


def valid_transitions(current: TaskState) -> frozenset[TaskState]:
    """Every state a task instance in ``current`` may move to."""
    return ALLOWED[current]


def transition(current: TaskState, new: TaskState, *, by_hand: bool = False) -> TaskState:
    """Return ``new`` if the move is legal (``by_hand``: or a mark, see
    ``MARKABLE_TASK_STATES``), else raise ``InvalidTransition`` naming both."""
    marked = by_hand and new in MARKABLE_TASK_STATES and current not in (new, _T.REMOVED)
    if new not in ALLOWED[current] and not marked:
        raise InvalidTransition(
            f"task cannot go from '{current.value}' to '{new.value}'",
            details={"from": current.value, "to": new.value},
        )
    return new


def run_transition(current: RunState, new: RunState, *, by_hand: bool = False) -> RunState:
    """Return ``new`` if a run may move from ``current`` to it (``by_hand``: or a mark, see
    ``MARKABLE_RUN_STATES``), else raise ``InvalidTransition``."""
    marked = by_hand and new in MARKABLE_RUN_STATES and current is not new
    if new not in RUN_ALLOWED[current] and not marked:
        raise InvalidTransition(
            f"run cannot go from '{current.value}' to '{new.value}'",
            details={"from": current.value, "to": new.value},
        )
    return new


def derive_run_state(
    task_states: Mapping[str, TaskState], leaf_task_ids: Iterable[str] | None = None
) -> RunState:
    """The state a run is in given the states of its task instances.

    While any task is unfinished the run is ``running``. Once all are finished the run
    is ``failed`` if any leaf (every task when no leaves are given) failed or had its
    upstream fail — as in Airflow, a failure that a downstream ``all_done`` task absorbed
    does not fail the run — ``cancelled`` if any task was cancelled, else ``success``.
    """
    if any(state not in FINISHED_TASK_STATES for state in task_states.values()):
        return RunState.RUNNING
    judged = (
        task_states.values()
        if leaf_task_ids is None
        else [task_states[t] for t in leaf_task_ids if t in task_states]
    )
    if any(state in FAILURE_STATES for state in judged):
        return RunState.FAILED
    if any(state is TaskState.CANCELLED for state in task_states.values()):
        return RunState.CANCELLED
    return RunState.SUCCESS


def evaluate_trigger_rule(rule: TriggerRule, upstream_states: Iterable[TaskState]) -> Readiness:
    """Decide whether a waiting task may run, with Airflow's semantics.

    Upstream tasks that were ``removed`` from the DAG are ignored; ``cancelled`` counts as
    a failure. A task with no (remaining) upstream is always ready.
    """
    counts = Counter(s for s in upstream_states if s is not TaskState.REMOVED)
    failed = counts[_T.FAILED] + counts[_T.UPSTREAM_FAILED] + counts[_T.CANCELLED]
    return evaluate_counts(
        rule, sum(counts.values()), counts[_T.SUCCESS], counts[_T.SKIPPED], failed
    )


def evaluate_counts(
    rule: TriggerRule, total: int, success: int, skipped: int, failed: int
) -> Readiness:
    """``evaluate_trigger_rule`` from running tallies of the upstream outcomes, so that an
    engine can update them in O(1) per finished upstream task instead of rescanning."""
    if rule is TriggerRule.ALWAYS or total == 0:
        return Readiness.READY
    done = success + skipped + failed == total
    return _RULES[rule](total, success, skipped, failed, done)


def outcome_of(state: TaskState) -> str | None:
    """How a finished upstream counts for trigger rules: ``success``, ``skipped``, ``failed``,
    or ``None`` while unfinished (and for ``removed``, which does not count at all)."""
    if state is TaskState.SUCCESS:
        return "success"
    if state is TaskState.SKIPPED:
        return "skipped"
    if state in (TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED):
        return "failed"
    return None


def _all_success(total: int, success: int, skipped: int, failed: int, done: bool) -> Readiness:
    if failed:
        return Readiness.UPSTREAM_FAILED
    if skipped:
        return Readiness.SKIP
    return Readiness.READY if success == total else Readiness.WAIT


def _all_failed(total: int, success: int, skipped: int, failed: int, done: bool) -> Readiness:
    if success or skipped:
        return Readiness.SKIP
    return Readiness.READY if failed == total else Readiness.WAIT


def _all_done(total: int, success: int, skipped: int, failed: int, done: bool) -> Readiness:
    return Readiness.READY if done else Readiness.WAIT


def _one_success(total: int, success: int, skipped: int, failed: int, done: bool) -> Readiness:
    if success:
        return Readiness.READY
    if not done:
        return Readiness.WAIT
    return Readiness.SKIP if skipped == total else Readiness.UPSTREAM_FAILED


def _one_failed(total: int, success: int, skipped: int, failed: int, done: bool) -> Readiness:
    if failed:
        return Readiness.READY
    return Readiness.SKIP if done else Readiness.WAIT


def _none_failed(total: int, success: int, skipped: int, failed: int, done: bool) -> Readiness:
    if failed:
        return Readiness.UPSTREAM_FAILED
    return Readiness.READY if done else Readiness.WAIT


def _none_skipped(total: int, success: int, skipped: int, failed: int, done: bool) -> Readiness:
    if skipped:
        return Readiness.SKIP
    return Readiness.READY if done else Readiness.WAIT


_RULES = {
    TriggerRule.ALL_SUCCESS: _all_success,
    TriggerRule.ALL_FAILED: _all_failed,
    TriggerRule.ALL_DONE: _all_done,
    TriggerRule.ONE_SUCCESS: _one_success,
    TriggerRule.ONE_FAILED: _one_failed,
    TriggerRule.NONE_FAILED: _none_failed,
    TriggerRule.NONE_SKIPPED: _none_skipped,
}
