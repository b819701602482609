import itertools

import pytest

from pipeline_core.errors import InvalidTransition
from pipeline_core.state import (
    Readiness,
    RunState,
    TaskState,
    TriggerRule,
    can_transition,
    derive_run_state,
    evaluate_trigger_rule,
    run_transition,
    transition,
    valid_transitions,
)

T = TaskState
LEGAL = {
    (T.QUEUED, T.RUNNING),
    (T.QUEUED, T.SKIPPED),
    (T.QUEUED, T.UPSTREAM_FAILED),
    (T.QUEUED, T.REMOVED),
    (T.QUEUED, T.CANCELLED),
    (T.RUNNING, T.SUCCESS),
    (T.RUNNING, T.FAILED),
    (T.RUNNING, T.UP_FOR_RETRY),
    (T.RUNNING, T.CANCELLED),
    (T.RUNNING, T.SKIPPED),  # a mapped task whose instances were all skipped
    (T.UP_FOR_RETRY, T.QUEUED),
    (T.UP_FOR_RETRY, T.FAILED),
    (T.UP_FOR_RETRY, T.CANCELLED),
    (T.FAILED, T.QUEUED),
    (T.UPSTREAM_FAILED, T.QUEUED),
    (T.SKIPPED, T.QUEUED),
    (T.CANCELLED, T.QUEUED),
    (T.SUCCESS, T.QUEUED),
}


@pytest.mark.parametrize(
    ("current", "new"),
    list(itertools.product(TaskState, TaskState)),
    ids=lambda s: s.value,
)
def test_every_task_transition_is_legal_exactly_when_listed(current, new):
    legal = (current, new) in LEGAL
    assert can_transition(current, new) is legal
    assert (new in valid_transitions(current)) is legal
    if legal:
        assert transition(current, new) is new
    else:
        with pytest.raises(InvalidTransition) as info:
            transition(current, new)
        assert f"'{current.value}'" in str(info.value)
        assert f"'{new.value}'" in str(info.value)
        assert info.value.code == "invalid_state"


def test_removed_is_final():
    assert valid_transitions(T.REMOVED) == frozenset()


def test_run_transitions():
    assert run_transition(RunState.QUEUED, RunState.RUNNING) is RunState.RUNNING
    assert run_transition(RunState.FAILED, RunState.RUNNING) is RunState.RUNNING
    with pytest.raises(InvalidTransition, match="'success' to 'failed'"):
        run_transition(RunState.SUCCESS, RunState.FAILED)
    with pytest.raises(InvalidTransition):
        run_transition(RunState.QUEUED, RunState.SUCCESS)


S, F, UF, SK, C, R, Q, RUN, UR = (
    T.SUCCESS,
    T.FAILED,
    T.UPSTREAM_FAILED,
    T.SKIPPED,
    T.CANCELLED,
    T.REMOVED,
    T.QUEUED,
    T.RUNNING,
    T.UP_FOR_RETRY,
)
READY, WAIT, SKIP, UPF = Readiness.READY, Readiness.WAIT, Readiness.SKIP, Readiness.UPSTREAM_FAILED

TRIGGER_CASES = [
    # all_success
    (TriggerRule.ALL_SUCCESS, [S, S], READY),
    (TriggerRule.ALL_SUCCESS, [S, RUN], WAIT),
    (TriggerRule.ALL_SUCCESS, [S, F], UPF),
    (TriggerRule.ALL_SUCCESS, [RUN, UF], UPF),
    (TriggerRule.ALL_SUCCESS, [S, SK], SKIP),
    (TriggerRule.ALL_SUCCESS, [S, C], UPF),
    (TriggerRule.ALL_SUCCESS, [UR, S], WAIT),
    # all_failed
    (TriggerRule.ALL_FAILED, [F, UF], READY),
    (TriggerRule.ALL_FAILED, [F, Q], WAIT),
    (TriggerRule.ALL_FAILED, [F, S], SKIP),
    (TriggerRule.ALL_FAILED, [F, SK], SKIP),
    # all_done
    (TriggerRule.ALL_DONE, [S, F, SK, UF], READY),
    (TriggerRule.ALL_DONE, [S, RUN], WAIT),
    (TriggerRule.ALL_DONE, [F, UR], WAIT),
    # one_success
    (TriggerRule.ONE_SUCCESS, [S, RUN], READY),
    (TriggerRule.ONE_SUCCESS, [F, RUN], WAIT),
    (TriggerRule.ONE_SUCCESS, [F, UF], UPF),
    (TriggerRule.ONE_SUCCESS, [SK, SK], SKIP),
    (TriggerRule.ONE_SUCCESS, [SK, F], UPF),
    # one_failed
    (TriggerRule.ONE_FAILED, [F, RUN], READY),
    (TriggerRule.ONE_FAILED, [UF, S], READY),
    (TriggerRule.ONE_FAILED, [S, RUN], WAIT),
    (TriggerRule.ONE_FAILED, [S, SK], SKIP),
    # none_failed
    (TriggerRule.NONE_FAILED, [S, SK], READY),
    (TriggerRule.NONE_FAILED, [S, RUN], WAIT),
    (TriggerRule.NONE_FAILED, [S, F], UPF),
    (TriggerRule.NONE_FAILED, [UF, RUN], UPF),
    # none_skipped
    (TriggerRule.NONE_SKIPPED, [S, F], READY),
    (TriggerRule.NONE_SKIPPED, [S, RUN], WAIT),
    (TriggerRule.NONE_SKIPPED, [S, SK], SKIP),
    # always
    (TriggerRule.ALWAYS, [RUN, Q], READY),
    (TriggerRule.ALWAYS, [F], READY),
    # removed upstream is ignored
    (TriggerRule.ALL_SUCCESS, [S, R], READY),
    (TriggerRule.ALL_SUCCESS, [R], READY),
]


@pytest.mark.parametrize(("rule", "upstream", "expected"), TRIGGER_CASES)
def test_trigger_rules(rule, upstream, expected):
    assert evaluate_trigger_rule(rule, upstream) is expected


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_roots_are_always_ready(rule):
    assert evaluate_trigger_rule(rule, []) is READY


def test_run_state_running_while_any_task_unfinished():
    assert derive_run_state({"a": S, "b": Q}) is RunState.RUNNING
    assert derive_run_state({"a": S, "b": UR}) is RunState.RUNNING


def test_run_state_outcomes():
    assert derive_run_state({"a": S, "b": SK}) is RunState.SUCCESS
    assert derive_run_state({"a": S, "b": F}) is RunState.FAILED
    assert derive_run_state({"a": F, "b": UF}) is RunState.FAILED
    assert derive_run_state({"a": S, "b": C}) is RunState.CANCELLED
    assert derive_run_state({}) is RunState.SUCCESS


def test_run_state_judged_on_leaves_when_given():
    # a failure absorbed by an all_done leaf does not fail the run (Airflow semantics)
    states = {"work": F, "cleanup": S}
    assert derive_run_state(states, leaf_task_ids=["cleanup"]) is RunState.SUCCESS
    assert derive_run_state(states) is RunState.FAILED
