import textwrap

import pytest

from pipeline_core import DAG, branch_task, noop_task, python_task, sensor_task, shell_task, task
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.errors import DagValidationError

YAML = """
dag_id: etl
description: Nightly ETL
schedule: "0 6 * * *"
timezone: Europe/Berlin
start_date: 2026-01-01
tags: [etl]
default_args: {retries: 2, retry_delay: 30s}
tasks:
  extract: {type: shell, command: "echo 1", env: {A: "1"}}
  transform:
    type: python
    callable: "examples_lib.etl:transform"
    kwargs: {raw: "{{ xcom.extract.return_value }}"}
    depends_on: [extract]
  check:
    type: branch
    depends_on: [transform]
    branches:
      - when: "{{ xcom.transform.return_value.rows }} > 0"
        follow: [load]
    default: [alert]
  load: {type: noop, depends_on: [check], pool: db, priority_weight: 10}
  alert: {type: noop, depends_on: [check]}
  wait: {type: sensor, file: /tmp/x, poke_interval: 5s}
  report: {type: noop, depends_on: [load, alert, wait], trigger_rule: none_failed}
"""


def test_python_authoring_equals_the_yaml_equivalent():
    with DAG(
        "etl",
        description="Nightly ETL",
        schedule="0 6 * * *",
        timezone="Europe/Berlin",
        start_date="2026-01-01",
        tags=["etl"],
        default_args={"retries": 2, "retry_delay": "30s"},
    ) as dag:
        extract = shell_task("extract", "echo 1", env={"A": "1"})
        transform = python_task(
            "transform",
            "examples_lib.etl:transform",
            kwargs={"raw": "{{ xcom.extract.return_value }}"},
        )
        check = branch_task(
            "check",
            branches=[{"when": "{{ xcom.transform.return_value.rows }} > 0", "follow": ["load"]}],
            default=["alert"],
        )
        load = noop_task("load", pool="db", priority_weight=10)
        alert = noop_task("alert")
        wait = sensor_task("wait", file="/tmp/x", poke_interval="5s")
        report = noop_task("report", trigger_rule="none_failed")
        extract >> transform >> check >> [load, alert]
        [load, alert, wait] >> report
    assert dag.build() == load_dag_text(textwrap.dedent(YAML))


def test_task_decorator_wires_dependencies_and_xcom():
    with DAG("deco") as dag:

        @task(retries=2)
        def extract() -> dict:
            return {"rows": 3}

        @task
        def load(data: dict, mode: str = "append") -> None: ...

        load(extract(), mode="replace")
    built = dag.build()
    assert built.task_ids == ["extract", "load"]
    assert built.get_task("extract").retries == 2
    loader = built.get_task("load")
    assert loader.depends_on == ("extract",)
    assert loader.config["kwargs"] == {"data": "{{ xcom.extract.return_value }}", "mode": "replace"}
    assert callable(loader.config["callable"])


def test_task_called_twice_gets_unique_ids_and_item_access_is_a_nested_xcom():
    with DAG("twice") as dag:

        @task
        def produce() -> dict:
            return {"n": 1}

        @task
        def consume(n: int) -> None: ...

        first = produce()
        produce()
        consume(first["n"])
    built = dag.build()
    assert built.task_ids == ["produce", "produce__1", "consume"]
    assert built.get_task("consume").config["kwargs"] == {"n": "{{ xcom.produce.return_value.n }}"}


def test_left_shift_and_reverse_list_wiring():
    with DAG("wiring") as dag:
        a, b, c = noop_task("a"), noop_task("b"), noop_task("c")
        c << a
        a >> b
        [b] << noop_task("d")
    built = dag.build()
    assert built.get_task("c").depends_on == ("a",)
    assert built.get_task("b").depends_on == ("a", "d")


def test_invalid_python_dag_raises_every_issue_on_exit():
    with pytest.raises(DagValidationError) as info, DAG("bad", schedul="@daily") as _:
        a = noop_task("a", retries=-1)
        b = shell_task("b", "ls", trigger_rule="sometimes")
        a >> b >> a
    messages = " | ".join(issue.message for issue in info.value.issues)
    assert "did you mean 'schedule'" in messages
    assert "must be ≥ 0" in messages
    assert "unknown trigger_rule" in messages
    assert "cycle: " in messages
    assert info.value.issues[0].file == __file__


def test_duplicate_task_id_is_refused():
    with pytest.raises(DagValidationError, match="duplicate task id 'a'"), DAG("dup"):
        noop_task("a")
        noop_task("a")


def test_tasks_outside_a_dag_block_are_refused():
    with pytest.raises(RuntimeError, match="inside a 'with DAG"):
        noop_task("lonely")
