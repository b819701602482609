"""Notification rules and deadlines in DAG files: what loads (YAML and Python), every error
with its line, and secrets that stay references in the serialised form."""

from __future__ import annotations

import json
import textwrap
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from pipeline_core.dag.authoring import DAG, noop_task
from pipeline_core.dag.serialize import dag_to_dict
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.errors import DagValidationError

GOOD = """
dag_id: etl
notify:
  - on: [run_failed, task_failed]
    webhook: {url: "http://hooks.example/x", secret: "${env:HOOK_SECRET}", headers: {X-Team: data}}
  - on: deadline_missed
    email: {to: [oncall@example.com], subject: "{{ dag_id }} is late"}
deadline: 30m
deadline_action: cancel
default_args:
  notify: [{on: task_retrying, slack: "${env:SLACK_URL}"}]
tasks:
  extract: {}
  load: {notify: [{on: [task_failed, task_succeeded], callable: "alerting:page"}]}
"""


@pytest.fixture(autouse=True)
def secrets(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOOK_SECRET", "s3cret-value")
    monkeypatch.setenv("SLACK_URL", "https://hooks.slack.example/T0/B0/xyz")


def load(text: str):  # type: ignore[no-untyped-def]
    return load_dag_text(textwrap.dedent(text), default_dag_id="t")


def problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(DagValidationError) as caught:
        load(text)
    return [(i.line, i.path, i.message) for i in caught.value.issues]


def test_rules_deadline_and_task_rules_load():
    dag = load(GOOD)
    assert [(r.on, r.target) for r in dag.notify] == [
        (("run_failed", "task_failed"), "webhook"),
        (("deadline_missed",), "email"),
    ]
    assert (dag.deadline, dag.deadline_action) == (1800.0, "cancel")
    extract, task_load = dag.tasks
    assert [(r.on, r.target, dict(r.settings)) for r in extract.notify] == [
        (("task_retrying",), "slack", {"url": "${env:SLACK_URL}"})
    ]
    assert [r.target for r in task_load.notify] == ["callable"]  # its own replaces the default


def test_secrets_stay_references_in_the_serialised_form():
    text = json.dumps(dag_to_dict(load(GOOD)))
    assert "${env:HOOK_SECRET}" in text and "${env:SLACK_URL}" in text
    assert "s3cret-value" not in text and "hooks.slack.example" not in text


def test_a_dag_without_rules_keeps_its_serialised_form():
    assert "notify" not in dag_to_dict(load("tasks: {a: {}}")) and "deadline" not in dag_to_dict(
        load("tasks: {a: {}}")
    )


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{on: run_failed}", "needs exactly one target of webhook, slack, email, callable; got none"),
        ("{on: run_failed, slack: 'http://a/b', webhook: {url: 'http://a/c'}}",
         "got webhook and slack"),
        ("{on: [run_faild], slack: 'http://a/b'}", "unknown event kind 'run_faild'; did you mean 'run_failed'?"),
        ("{on: run_failed, webhook: {url: 'ftp://a/b'}}", "invalid URL 'ftp://a/b'"),
        ("{on: run_failed, webhook: {url: 'http://a/b', secret: '${env:NOT_SET_ANYWHERE}'}}",
         "environment variable 'NOT_SET_ANYWHERE' is not set"),
        ("{on: run_failed, email: {to: 'not-an-address'}}", "invalid e-mail address"),
        ("{on: run_failed, email: {to: a@b.c, subject: '{{ nope }}'}}", "unknown field {{ nope }}"),
        ("{on: run_failed, callable: 'no colon'}", "expected 'module:function'"),
        ("{on: run_failed, webhook: {url: 'http://a/b', retries: 3}}", "unknown webhook setting 'retries'"),
        ("{when: run_failed, slack: 'http://a/b'}", "unknown key 'when'"),
        ("{slack: 'http://a/b'}", "missing 'on'"),
    ],
)  # fmt: skip
def test_each_bad_rule_is_reported_on_its_line(rule: str, message: str) -> None:
    found = problems(f"tasks: {{a: {{}}}}\nnotify:\n  - {rule}\n")
    assert any(line == 3 and message in text for line, _, text in found), found


def test_a_task_rule_hears_only_task_events():
    [(line, path, message)] = problems(
        "tasks:\n  a:\n    notify: [{on: run_failed, slack: 'http://a/b'}]\n"
    )
    assert (line, path) == (3, "tasks.a.notify[0].on") and "only its task's events" in message


def test_a_bad_deadline_and_action_are_reported():
    found = problems("tasks: {a: {}}\ndeadline: soon\ndeadline_action: page\n")
    assert [line for line, _, _ in found] == [2, 3]
    assert "invalid duration 'soon'" in found[0][2] and "unknown deadline_action" in found[1][2]


def test_python_dags_take_rules_and_a_function_as_the_callable():
    with DAG(
        "py_alerts",
        notify=[
            {
                "on": ["run_failed"],
                "callable": test_python_dags_take_rules_and_a_function_as_the_callable,
            }
        ],
        deadline="1h",
    ) as dag:
        noop_task("a", notify=[{"on": "task_failed", "webhook": {"url": "http://a/b"}}])
    built = dag.build()
    [rule] = built.notify
    assert (
        rule.settings["ref"]
        == f"{__name__}:test_python_dags_take_rules_and_a_function_as_the_callable"
    )
    assert rule.settings["file"] == __file__
    assert built.deadline == 3600.0 and built.tasks[0].notify[0].target == "webhook"


def _readme_block(language: str) -> str:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Notifications and deadlines", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


def _yaml_1_2(value: object) -> object:
    """As an editor's YAML 1.2 reads it: ``on`` is a key, not ``True`` (YAML 1.1)."""
    if isinstance(value, dict):
        return {("on" if k is True else k): _yaml_1_2(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_1_2(v) for v in value]
    return value


def test_the_readme_examples_load_and_match_the_schema(monkeypatch):
    for name in ("HOOK_SECRET", "HOOK_TOKEN", "SLACK_WEBHOOK_URL", "SLACK_URL"):
        monkeypatch.setenv(name, "https://hooks.example.com/set")
    text = _readme_block("yaml")
    dag = load_dag_text(text)
    assert [r.target for r in dag.notify] == ["webhook", "slack", "email"]
    assert dag.deadline == 1800.0 and dag.deadline_action == "continue"
    assert dag.tasks[1].notify[0].target == "callable"
    schema = json.loads(
        resources.files("pipeline_core.dag").joinpath("dag.schema.json").read_text("utf-8")
    )
    jsonschema.validate(_yaml_1_2(yaml.safe_load(text)), schema)
    with pytest.raises(jsonschema.ValidationError):  # two targets in one rule
        jsonschema.validate(
            {"tasks": {"a": None}, "notify": [{"on": "run_failed", "slack": "x", "email": "y"}]},
            schema,
        )
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(_readme_block("python"), namespace)
    built = namespace["dag"].build()  # type: ignore[attr-defined]
    assert built.notify[0].settings["ref"] == "readme_example:page_me"
