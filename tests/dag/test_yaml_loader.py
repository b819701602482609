import json
from datetime import UTC, datetime

import pytest

from pipeline_core.state import TriggerRule
from tests.dag.yaml_helpers import FULL, load


def test_minimal_dag_gets_every_default():
    dag = load("tasks: {only: {}}", default_dag_id="minimal")
    assert dag.dag_id == "minimal"
    assert (dag.schedule, dag.catchup, dag.max_active_runs, dag.concurrency) == (None, False, 1, 16)
    assert dag.timezone == "UTC" and dag.tags == () and dag.is_paused is False
    task = dag.get_task("only")
    assert task.type == "noop"
    assert task.trigger_rule is TriggerRule.ALL_SUCCESS
    assert (task.retries, task.retry_delay, task.timeout) == (0, 0.0, None)
    assert (task.pool, task.priority_weight) == ("default_pool", 1)


def test_full_example_from_the_format_description():
    dag = load(FULL)
    assert dag.dag_id == "etl_daily"
    assert dag.description == "Nightly ETL"
    assert dag.schedule == "0 6 * * *"
    assert dag.timezone == "Europe/Berlin"
    # a naive start_date is midnight in the DAG's timezone
    assert dag.start_date == datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    assert dag.tags == ("etl", "production")
    assert dag.task_ids == ["extract", "transform", "check", "load", "alert", "report"]
    assert dag.get_task("report").depends_on == ("load", "alert")
    assert dag.get_task("report").trigger_rule is TriggerRule.NONE_FAILED
    assert dag.get_task("load").pool == "db"
    assert dag.get_task("load").priority_weight == 10
    assert dag.get_task("extract").config["command"] == "echo '{\"rows\": 3}'"
    assert dag.get_task("check").config["default"] == ["alert"]


def test_default_args_merge_and_task_values_win():
    dag = load(
        """
        default_args: {retries: 2, retry_delay: 30s, timeout: 10m, pool: shared}
        tasks:
          a: {}
          b: {retries: 5, timeout: 90, depends_on: [a]}
        """
    )
    a, b = dag.get_task("a"), dag.get_task("b")
    assert (a.retries, a.retry_delay, a.timeout, a.pool) == (2, 30.0, 600.0, "shared")
    assert (b.retries, b.retry_delay, b.timeout) == (5, 30.0, 90.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("2d", 172800),
        (45, 45),
        ("1.5", 1.5),
    ],
)
def test_durations(text, seconds):
    dag = load(f"tasks: {{a: {{retry_delay: {json.dumps(text)}}}}}")
    assert dag.get_task("a").retry_delay == seconds


def test_depends_on_accepts_a_single_id():
    dag = load("tasks: {a: {}, b: {depends_on: a}}")
    assert dag.get_task("b").depends_on == ("a",)


def test_templates_are_kept_verbatim():
    dag = load(
        """
        tasks:
          a: {type: shell, command: "echo {{ ds }} {{ run_id }} {{ dag_run.conf.x }}"}
          b:
            type: python
            callable: "m:f"
            depends_on: [a]
            kwargs: {v: "{{ xcom.a.return_value }}", n: ["{{ logical_date }}"]}
        """
    )
    assert dag.get_task("a").config["command"] == "echo {{ ds }} {{ run_id }} {{ dag_run.conf.x }}"
    assert dag.get_task("b").config["kwargs"] == {
        "v": "{{ xcom.a.return_value }}",
        "n": ["{{ logical_date }}"],
    }
