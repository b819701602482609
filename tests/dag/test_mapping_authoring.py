"""Mapped tasks as authors write them: YAML (``expand``, ``expand_mode``, ``max_map_length``,
``max_active_per_task``, ``{{ map.KEY }}``/``{{ map_index }}``) and Python (``partial()``,
``expand()``, ``expand_kwargs()``), with every problem reported where it is."""

from __future__ import annotations

import json
import textwrap
from importlib import resources

import jsonschema
import pytest
import yaml

from pipeline_core import DAG, python_task, shell_task, task
from pipeline_core.dag.mapping import Expansion
from pipeline_core.dag.serialize import dag_to_dict, definition_hash
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.errors import DagValidationError

MAPPED = """
dag_id: files
tasks:
  list_files: {type: python, callable: "lib:list_files"}
  load:
    type: python
    callable: "lib:load"
    depends_on: [list_files]
    kwargs: {table: raw}
    expand: {path: "{{ xcom.list_files.return_value }}", part: [1, 2]}
    expand_mode: zip
    max_map_length: 500
    max_active_per_task: 4
  echo:
    type: shell
    command: "echo {{ map_index }} {{ map.name }}"
    env: {NAME: "{{ map.name }}"}
    expand: {name: "{{ dag_run.conf.names }}"}
  total:
    type: python
    callable: "lib:total"
    depends_on: [load]
    kwargs: {counts: "{{ xcom.load.return_value }}"}
"""


def problems(text: str) -> str:
    with pytest.raises(DagValidationError) as caught:
        load_dag_text(textwrap.dedent(text))
    return str(caught.value)


def test_yaml_mapped_tasks_carry_their_expansion() -> None:
    dag = load_dag_text(MAPPED)
    load = dag.task_dict["load"]
    assert load.expansion == Expansion(
        {"path": "{{ xcom.list_files.return_value }}", "part": [1, 2]}, "zip", 500, 4
    )
    assert dict(load.config) == {"callable": "lib:load", "kwargs": {"table": "raw"}}
    assert dag.task_dict["echo"].expansion is not None
    assert dag.task_dict["total"].expansion is None


def test_the_schema_knows_mapped_tasks() -> None:
    text = resources.files("pipeline_core.dag").joinpath("dag.schema.json").read_text("utf-8")
    schema = json.loads(text)
    jsonschema.validate(yaml.safe_load(MAPPED), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tasks": {"a": {"type": "noop", "expand": {"x": [1]}}}}, schema)


def test_mapping_changes_the_definition_hash_only_of_mapped_dags() -> None:
    plain = load_dag_text("dag_id: a\ntasks: {t: {type: python, callable: 'm:f'}}")
    assert "expand" not in dag_to_dict(plain)["tasks"][0]
    mapped = load_dag_text(
        "dag_id: a\ntasks: {t: {type: python, callable: 'm:f', expand: {x: [1]}}}"
    )
    assert definition_hash(dag_to_dict(plain)) != definition_hash(dag_to_dict(mapped))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{type: noop, expand: {x: [1]}}", "tasks.t.expand: a noop task runs no code to map"),
        ("{type: python, callable: 'm:f', expand: {x: 3}}", "expected a list or a template"),
        ("{type: python, callable: 'm:f', expand: {x: 'a.csv'}}", "expected one template"),
        (
            "{type: python, callable: 'm:f', kwargs: {x: 1}, expand: {x: [1]}}",
            "'x' is both in kwargs and in expand",
        ),
        ("{type: python, callable: 'm:f', expand: {}}", "expected a mapping of keys"),
        ("{type: python, callable: 'm:f', expand_mode: zip}", "'expand_mode' needs 'expand'"),
        (
            "{type: python, callable: 'm:f', expand: {x: [1]}, expand_mode: diagonal}",
            "unknown expand_mode 'diagonal'",
        ),
        (
            "{type: python, callable: 'm:f', expand: {x: [1], y: [2]}, expand_mode: kwargs}",
            "give one key",
        ),
        (
            "{type: python, callable: 'm:f', expand: {x: [1]}, max_map_length: 0}",
            "tasks.t.max_map_length: expected a whole number from 1",
        ),
        ("{type: python, callable: 'm:f', expand: {x: '{{ ds }}'}}", "is not a list"),
        ("{type: shell, command: 'echo {{ map.x }}'}", "only known in a mapped task"),
        ("{type: shell, command: 'echo {{ map_index }}'}", "only known in a mapped task"),
        (
            "{type: shell, command: 'echo {{ map.y }}', expand: {x: [1]}}",
            "names no expand key (known: x)",
        ),
        (
            "{type: shell, command: 'echo', expand: {x: '{{ xcom.nowhere.return_value }}'}}",
            "names unknown task 'nowhere'",
        ),
        ("{type: python, callable: 'm:f', expnad: {x: [1]}}", "did you mean 'expand'"),
    ],
)
def test_wrong_mapping_settings_are_reported_where_they_are(body: str, message: str) -> None:
    assert message in problems(f"dag_id: d\ntasks:\n  t: {body}\n")


def test_a_problem_names_its_line() -> None:
    text = "dag_id: d\ntasks:\n  t:\n    type: noop\n    expand: {x: [1]}\n"
    assert "<dag>:5: tasks.t.expand" in problems(text)


def test_python_partial_and_expand_map_over_an_upstream_output() -> None:
    with DAG("py") as builder:

        @task
        def list_files() -> list[str]:
            return ["a", "b"]

        @task
        def load(path: str, table: str) -> int:
            return 1

        @task
        def total(counts: list[int]) -> int:
            return sum(counts)

        total(load.partial(table="raw").expand(path=list_files()))  # type: ignore[attr-defined]
    dag = builder.build()
    load_task = dag.task_dict["load"]
    assert load_task.depends_on == ("list_files",)
    assert load_task.expansion == Expansion({"path": "{{ xcom.list_files.return_value }}"})
    assert dict(load_task.config)["kwargs"] == {"table": "raw"}
    assert dag.task_dict["total"].config["kwargs"] == {"counts": "{{ xcom.load.return_value }}"}


def test_python_expand_kwargs_and_literal_lists() -> None:
    with DAG("py") as builder:

        @task
        def make() -> list[dict[str, int]]:
            return [{"x": 1}]

        @task
        def scale(x: int, factor: int = 1) -> int:
            return x * factor

        made = make()
        scale.expand_kwargs(made)  # type: ignore[attr-defined]
        scale.expand(x=range(3), factor=(1, 2))  # type: ignore[attr-defined]
        python_task("classic", "m:f", expand={"x": made})
        shell_task("sh", "echo {{ map.n }}", expand={"n": [1, 2]})
    dag = builder.build()
    first, second = dag.task_dict["scale"], dag.task_dict["scale__1"]
    assert first.expansion == Expansion({"kwargs": "{{ xcom.make.return_value }}"}, "kwargs")
    assert first.depends_on == ("make",)
    assert second.expansion == Expansion({"x": [0, 1, 2], "factor": [1, 2]})
    assert dag.task_dict["classic"].depends_on == ("make",)
    assert dag.task_dict["sh"].expansion == Expansion({"n": [1, 2]})


def test_python_mapping_mistakes_fail_where_they_are_written() -> None:
    with DAG("py"):

        @task
        def scale(x: int, factor: int = 1) -> int:
            return x * factor

        with pytest.raises(TypeError):
            scale.partial(nope=1)  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match="factor given both"):
            scale.partial(factor=2).expand(factor=[1])  # type: ignore[attr-defined]
        with pytest.raises(TypeError, match="at least one"):
            scale.expand()  # type: ignore[attr-defined]
        with pytest.raises(TypeError):
            scale.expand(y=[1])  # type: ignore[attr-defined]
        scale.expand(x=[1])  # type: ignore[attr-defined]
