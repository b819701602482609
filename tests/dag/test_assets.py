"""Asset conditions: parsing with positions, and which runs waiting updates make — checked
against deciding after every update as it came (property tests over random histories)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_core.dag.assets import (
    AllOf,
    AnyOf,
    Asset,
    ConditionError,
    Update,
    parse_condition,
    plan,
    take,
    to_text,
    uris,
)


def updates(*names: str) -> dict[str, list[Update]]:
    pending: dict[str, list[Update]] = {}
    for seq, name in enumerate(names, 1):
        pending.setdefault(name, []).append(Update(seq, name))
    return pending


def made(condition: str, *names: str, collapse: bool = False) -> list[list[str]]:
    runs = plan(parse_condition(condition), updates(*names), collapse=collapse)
    return [[u.uri for u in run] for run in runs]


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    assert parse_condition("a | b & c") == AnyOf((Asset("a"), AllOf((Asset("b"), Asset("c")))))
    assert parse_condition("(a | b) & c") == AllOf((AnyOf((Asset("a"), Asset("b"))), Asset("c")))
    condition = parse_condition("orders & (customers | refunds)")
    assert uris(condition) == {"orders", "customers", "refunds"}
    assert to_text(condition) == "orders & (customers | refunds)"
    assert parse_condition(" s3://bucket/orders&db://w/o ") == AllOf(
        (Asset("s3://bucket/orders"), Asset("db://w/o"))
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a condition"),
        ("   ", "expected a condition"),
        ("a &", "ends where an asset URI"),
        ("a & | b", "at character 5, got '|'"),
        ("(a | b", "'(' at character 1 is never closed"),
        ("a b", "unexpected 'b' at character 3"),
        ("a )", "unexpected ')' at character 3"),
        ("x" * 1001, "at most 1000 characters"),
        ("a | " * 3000 + "a", "at most 10,000 characters"),
    ],
)
def test_malformed_conditions_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(text)
    assert message in str(caught.value)


def test_every_update_counts_unless_collapsed() -> None:
    assert made("a | b", "a", "b", "a") == [["a"], ["b"], ["a"]]
    assert made("a & b", "a", "a", "b") == [["a", "b"]]  # the second a waits for a new b
    assert made("a & b", "a", "a", "b", "b") == [["a", "b"], ["a", "b"]]
    assert made("a & b", "a", "a", "b", collapse=True) == [["a", "a", "b"]]
    assert made("a & b", "a", "a", collapse=True) == []
    assert made("orders & (customers | refunds)", "refunds", "orders", "customers") == [
        ["refunds", "orders"]
    ]


def test_an_or_takes_the_way_complete_soonest() -> None:
    pending = updates("b", "a", "c")  # b & c completes at 3, a at 2
    assert take(parse_condition("(b & c) | a"), pending) == [Update(2, "a")]


NAMES = st.sampled_from(["a", "b", "c"])
CONDITIONS = st.sampled_from(["a", "a | b", "a & b", "a | (b & c)", "(a | b) & c", "a & b & c"])


@settings(max_examples=200, deadline=None)
@given(CONDITIONS, st.lists(NAMES, max_size=30))
def test_a_batch_makes_the_runs_deciding_after_each_update_makes(
    text: str, history: list[str]
) -> None:
    condition = parse_condition(text)
    pending: dict[str, list[Update]] = {}
    one_by_one: list[list[Update]] = []
    for seq, name in enumerate(history, 1):
        pending.setdefault(name, []).append(Update(seq, name))
        for run in plan(condition, pending):
            one_by_one.append(run)
            for update in run:
                pending[update.uri].remove(update)
    assert plan(condition, updates(*history)) == one_by_one


def load(text: str) -> object:
    from pipeline_core.dag.yaml_loader import load_dag_text

    return load_dag_text(text)


def problems(text: str) -> str:
    from pipeline_core.errors import DagValidationError

    with pytest.raises(DagValidationError) as caught:
        load(text)
    return str(caught.value)


def test_a_dag_schedules_on_assets_cron_or_both_and_tasks_name_outlets() -> None:
    dag = load(
        "dag_id: d\nschedule: {assets: 'orders & (customers | refunds)', collapse: true}\n"
        "tasks:\n  t: {outlets: ['s3://b/{{ ds }}/orders', db://w/orders]}\n"
    )
    assert dag.schedule is None and dag.assets is not None  # type: ignore[attr-defined]
    assert dag.assets.text == "orders & (customers | refunds)" and dag.assets.collapse  # type: ignore[attr-defined]
    assert dag.task_dict["t"].outlets == ("s3://b/{{ ds }}/orders", "db://w/orders")  # type: ignore[attr-defined]
    both = load(
        "dag_id: d\nstart_date: 2026-01-01\nschedule: {cron: '@daily', assets: a}\ntasks: {t: {}}"
    )
    assert both.schedule == "@daily" and both.assets.text == "a"  # type: ignore[attr-defined]
    plain = load("dag_id: d\nstart_date: 2026-01-01\nschedule: '@daily'\ntasks: {t: {}}")
    assert plain.assets is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("schedule: {assets: 'a &'}", "schedule.assets: 'a &' ends where"),
        ("schedule: {assets: ''}", "schedule.assets: expected a condition"),
        ("schedule: {asets: a}", "schedule.asets: unknown key"),
        ("schedule: {}", "a schedule mapping needs cron, assets or both"),
        ("schedule: {assets: a, collapse: maybe}", "schedule.collapse: expected true or false"),
        ("schedule: {cron: '@daily', collapse: true}", "'collapse' needs 'assets'"),
        ("schedule: [a]", "expected a cron expression, or a mapping"),
        ("schedule: {cron: 'not cron', assets: a}", "invalid schedule 'not cron'"),
        ("tasks: {t: {outlets: [a b]}}", "tasks.t.outlets[0]: asset URI 'a b' has a blank"),
        ("tasks: {t: {outlets: ['{{ xcom.t.x }}']}}", "only what is known of the run"),
        ("tasks: {t: {outlets: [3]}}", "tasks.t.outlets[0]: expected an asset URI"),
        ("tasks: {t: {outlets: {a: 1}}}", "tasks.t.outlets: expected a list"),
        ("tasks: {t: {type: trigger_dag}}", "tasks.t.dag_id: missing dag_id"),
        ("tasks: {t: {type: trigger_dag, dag_id: 'a b'}}", "tasks.t.dag_id: invalid id"),
        ("tasks: {t: {type: trigger_dag, dag_id: x, wait: 1}}", "tasks.t.wait: expected true"),
        (
            "tasks: {t: {type: trigger_dag, dag_id: x, conf: [1]}}",
            "tasks.t.conf: expected a mapping",
        ),
        ("tasks: {t: {type: trigger_dag, dag_id: x, executor: worker}}", "engine's own threads"),
        ("tasks: {t: {type: trigger_dag, dag_id: x, dagid: y}}", "did you mean 'dag_id'"),
        ("webhooks: {gh: {secret: plain}}", "webhooks.gh.secret: expected a reference"),
        ("webhooks: {gh: {secret: '${env:NOPE_NOT_SET}'}}", "'NOPE_NOT_SET' is not set"),
        ("webhooks: {gh: {secret: '${env:HOME}', when: 'import os'}}", "webhooks.gh.when"),
        ("webhooks: {gh: {secret: '${env:HOME}', conf: {a: '{{ xcom.t.x }}'}}}", "a webhook knows"),
        ("webhooks: {gh: {secret: '${env:HOME}', secrte: 1}}", "webhooks.gh.secrte: unknown key"),
        ("webhooks: {'a b': {secret: '${env:HOME}'}}", "a webhook name is letters"),
        ("webhooks: [gh]", "webhooks: expected a mapping"),
        ("tasks: {t: {type: shell, command: 'echo {{ payload.x }}'}}", "only known in a webhook"),
    ],
)
def test_wrong_event_settings_are_reported_where_they_are(document: str, message: str) -> None:
    text = "dag_id: d\n" + document + ("\ntasks: {t: {}}" if "tasks" not in document else "")
    assert message in problems(text)
