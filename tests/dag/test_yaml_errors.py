"""Every validation error of the YAML loader, with its message and location, and the JSON
Schema agreeing with the loader."""

import json
from importlib import resources

import jsonschema
import pytest
import yaml

from pipeline_core.dag.yaml_loader import load_dag_file, load_dag_text
from pipeline_core.errors import DagValidationError
from tests.dag.yaml_helpers import EXAMPLES, FULL, issues, load, only_issue

# --- every validation error with its message and location -------------------------------


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        pytest.param("tasks:\n  a: {}\n  a: {}\n", "", 3, "duplicate key 'a'", id="duplicate-task"),
        pytest.param(
            "tasks:\n  a: {}\n  b:\n    depends_on: [a, c]\n",
            "tasks.b.depends_on[1]",
            4,
            "depends on unknown task 'c'",
            id="dangling",
        ),
        pytest.param(
            "tasks:\n  a: {depends_on: [a]}\n",
            "tasks.a.depends_on[0]",
            2,
            "depends on itself",
            id="self",
        ),
        pytest.param(
            "tasks:\n  a: {trigger_rule: all_sucess}\n",
            "tasks.a.trigger_rule",
            2,
            "did you mean 'all_success'",
            id="trigger-rule",
        ),
        pytest.param(
            "tasks:\n  a: {type: bash}\n", "tasks.a.type", 2, "unknown task type 'bash'", id="type"
        ),
        pytest.param(
            "tasks:\n  a: {retries: -1}\n", "tasks.a.retries", 2, "must be ≥ 0", id="retries"
        ),
        pytest.param(
            "tasks:\n  a: {timeout: -5}\n", "tasks.a.timeout", 2, "finite number ≥ 0", id="timeout"
        ),
        pytest.param(
            "tasks:\n  a: {retry_delay: 5 minutes}\n",
            "tasks.a.retry_delay",
            2,
            "invalid duration",
            id="dur",
        ),
        pytest.param("tasks:\n  bad id: {}\n", "tasks.bad id", 2, "invalid id", id="task-id"),
        pytest.param(
            "tasks:\n  a: {executor: gpu}\n",
            "tasks.a.executor",
            2,
            "unknown executor 'gpu' (use worker, process, thread, celery)",
            id="executor",
        ),
        pytest.param(
            "tasks:\n  a: {memory_limit: -1}\n",
            "tasks.a.memory_limit",
            2,
            "size must be > 0",
            id="memory-negative",
        ),
        pytest.param(
            "tasks:\n  a: {memory_limit: lots}\n",
            "tasks.a.memory_limit",
            2,
            "expected a size",
            id="memory-text",
        ),
        pytest.param(
            "tasks:\n  a: {cpu_time_limit: 0}\n",
            "tasks.a.cpu_time_limit",
            2,
            "must be > 0",
            id="cpu-zero",
        ),
        pytest.param(
            "tasks:\n  a: {executor: thread, memory_limit: 1GiB}\n",
            "tasks.a.memory_limit",
            2,
            "a limit needs a process of its own",
            id="limit-on-thread",
        ),
        pytest.param("dag_id: x/y\ntasks: {a: {}}\n", "dag_id", 1, "invalid id", id="dag-id"),
        pytest.param(
            "tasks:\n  " + "x" * 251 + ": {}\n",
            "tasks." + "x" * 251,
            2,
            "maximum is 250",
            id="long-id",
        ),
        pytest.param(
            "tasks:\n  a:\n    depend_on: [b]\n",
            "tasks.a.depend_on",
            3,
            "unknown key 'depend_on'; did you mean 'depends_on'?",
            id="typo-task-key",
        ),
        pytest.param(
            "shedule: '@daily'\ntasks: {a: {}}\n",
            "shedule",
            1,
            "did you mean 'schedule'?",
            id="typo-dag-key",
        ),
        pytest.param(
            "default_args: {retrys: 1}\ntasks: {a: {}}\n",
            "default_args.retrys",
            1,
            "did you mean 'retries'?",
            id="typo-default-args",
        ),
        pytest.param(
            "tasks:\n  a: {type: shell, command: ls, comand: ls}\n",
            "tasks.a.comand",
            2,
            "did you mean 'command'?",
            id="typo-type-key",
        ),
        pytest.param(
            "tasks:\n  a: {type: shell}\n", "tasks.a.command", 2, "missing command", id="no-command"
        ),
        pytest.param(
            "tasks:\n  a: {type: python, callable: nocolon}\n",
            "tasks.a.callable",
            2,
            "expected 'module:function'",
            id="callable",
        ),
        pytest.param(
            "schedule: '0 25 * * *'\nstart_date: 2026-01-01\ntasks: {a: {}}\n",
            "schedule",
            1,
            "invalid cron expression",
            id="cron",
        ),
        pytest.param(
            "schedule: '@fortnightly'\nstart_date: 2026-01-01\ntasks: {a: {}}\n",
            "schedule",
            1,
            "unknown schedule preset",
            id="preset",
        ),
        pytest.param(
            "schedule: '@daily'\ntasks: {a: {}}\n",
            "start_date",
            1,
            "needs a start_date",
            id="no-start",
        ),
        pytest.param(
            "timezone: Mars/Olympus\ntasks: {a: {}}\n", "timezone", 1, "unknown timezone", id="tz"
        ),
        pytest.param(
            "start_date: 2026-02-30\ntasks: {a: {}}\n", "start_date", 1, "invalid date", id="date"
        ),
        pytest.param(
            "catchup: maybe\ntasks: {a: {}}\n", "catchup", 1, "expected true or false", id="bool"
        ),
        pytest.param("max_active_runs: 0\ntasks: {a: {}}\n", "max_active_runs", 1, "≥ 1", id="mar"),
        pytest.param(
            "concurrency: yes\ntasks: {a: {}}\n", "concurrency", 1, "got a boolean", id="conc"
        ),
        pytest.param("tags: etl\ntasks: {a: {}}\n", "", None, None, id="tag-string-ok"),
        pytest.param(
            "tasks:\n  a: {type: shell, command: 'echo {{ xcom.zz.v }}'}\n",
            "tasks.a.command",
            2,
            "unknown task 'zz'",
            id="template-task",
        ),
        pytest.param(
            "tasks:\n  a: {type: shell, command: 'echo {{ os.system }}'}\n",
            "tasks.a.command",
            2,
            "unknown name 'os'",
            id="template-root",
        ),
        pytest.param(
            "tasks:\n  a: {type: shell, command: 'echo {{ ds'}\n",
            "tasks.a.command",
            2,
            "unterminated template",
            id="template-open",
        ),
        pytest.param(
            "tasks:\n  a: {}\n  b:\n    type: branch\n    depends_on: [a]\n    branches:\n"
            "      - {when: 'len(x) > 1', follow: [c]}\n  c: {depends_on: [b]}\n",
            "tasks.b.branches[0].when",
            7,
            "not allowed",
            id="branch-expression",
        ),
        pytest.param(
            "tasks:\n  a: {}\n  b:\n    type: branch\n    branches:\n      - {when: 'true', follow: [a]}\n",
            "tasks.b.branches[0].follow[0]",
            6,
            "not a direct downstream task",
            id="branch-follow",
        ),
        pytest.param(
            "tasks:\n  b: {type: branch}\n",
            "tasks.b",
            2,
            "exactly one of 'branches' or 'callable'",
            id="branch",
        ),
        pytest.param(
            "tasks:\n  s: {type: sensor, file: /x, until: '10:00'}\n",
            "tasks.s",
            2,
            "exactly one of 'poke', 'file' or 'until'",
            id="sensor-modes",
        ),
        pytest.param(
            "tasks:\n  s: {type: sensor, until: '25:99'}\n",
            "tasks.s.until",
            2,
            "HH:MM",
            id="sensor-until",
        ),
        pytest.param(
            "tasks:\n  ..: {}\n", "tasks...", 2, "cannot be addressed in a URL", id="dot-dot-task"
        ),
        pytest.param(
            "dag_id: '.'\ntasks: {a: {}}\n", "dag_id", 1, "cannot be addressed", id="dot-dag"
        ),
        pytest.param(
            "start_date: '0001-01-01T00:00:00+01:00'\ntasks: {a: {}}\n",
            "start_date",
            1,
            "outside the supported range",
            id="start-date-range",
        ),
        pytest.param(
            "tasks:\n  s: {type: sensor, until: '9999-12-31T23:00:00-05:00'}\n",
            "tasks.s.until",
            2,
            "outside the supported range",
            id="sensor-until-range",
        ),
        pytest.param("tasks: []\n", "tasks", 1, "expected a mapping of task id", id="tasks-list"),
        pytest.param("dag_id: x\n", "tasks", 1, "missing tasks", id="no-tasks"),
        pytest.param("tasks: {}\n", "tasks", 1, "at least one task", id="empty-tasks"),
        pytest.param("- a\n- b\n", "", 1, "expected a mapping", id="not-a-mapping"),
        pytest.param("tasks:\n  a: [1]\n", "tasks.a", 2, "expected a mapping", id="task-list"),
    ],
)
def test_validation_errors(text, path, line, message):
    if message is None:
        load(text)
        return
    issue = only_issue(text)
    assert issue.path == path
    assert issue.line == line
    assert message in issue.message
    assert issue.file == "dag.yaml"


def test_cycle_message_shows_the_path():
    issue = only_issue(
        """
        tasks:
          a: {depends_on: [c]}
          b: {depends_on: [a]}
          c: {depends_on: [b]}
        """
    )
    assert "a -> b -> c -> a" in issue.message
    assert issue.path == "tasks.a.depends_on"
    assert issue.line == 3


def test_all_errors_of_a_file_are_reported_together():
    found = issues(
        """
        dag_id: ok
        shedule: x
        tasks:
          a: {retries: -1, depend_on: [b]}
          b: {depends_on: [zz], trigger_rule: nope}
        """
    )
    paths = {issue.path for issue in found}
    assert {"shedule", "tasks.a.retries", "tasks.a.depend_on", "tasks.b.depends_on[0]"} <= paths
    assert "tasks.b.trigger_rule" in paths
    assert [i.line for i in found] == sorted(i.line for i in found)


def test_malformed_yaml_has_a_line():
    issue = only_issue("tasks:\n  a: {type: shell\n  b: {}\n")
    assert issue.message.startswith("invalid YAML")
    assert issue.line is not None


def test_empty_document():
    assert "empty DAG document" in only_issue("").message


def test_missing_dag_id_without_a_file_name():
    with pytest.raises(DagValidationError, match="missing dag_id"):
        load_dag_text("tasks: {a: {}}")


def test_yaml_tags_that_construct_objects_are_refused():
    issue = only_issue("tasks: !!python/object/apply:os.system ['true']\n")
    assert "invalid YAML" in issue.message


def test_alias_bomb_is_refused():
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [{','.join(['*' + chr(96 + i)] * 10)}]")
    lines.append("tasks: {t: {type: shell, command: ls, env: {x: *i}}}")
    assert "too many nodes" in only_issue("\n".join(lines)).message


def test_error_string_has_file_line_and_path():
    issue = only_issue("tasks:\n  a: {retries: -3}\n")
    assert str(issue) == "dag.yaml:2: tasks.a.retries: must be ≥ 0, got -3"


def test_load_dag_file_uses_file_name_as_id(tmp_path):
    path = tmp_path / "nightly.yml"
    path.write_text("tasks: {a: {}}\n")
    assert load_dag_file(path).dag_id == "nightly"
    assert load_dag_file(path).fileloc == str(path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DagValidationError, match="cannot read file"):
        load_dag_file(path)


# --- the JSON Schema agrees with the loader --------------------------------------------


def schema() -> dict:
    text = resources.files("pipeline_core.dag").joinpath("dag.schema.json").read_text("utf-8")
    return json.loads(text)


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_match_the_schema(path):
    jsonschema.validate(
        json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str)), schema()
    )
    load_dag_file(path)


def test_full_example_matches_the_schema():
    data = json.loads(json.dumps(yaml.safe_load(FULL), default=str))
    jsonschema.validate(data, schema())


@pytest.mark.parametrize(
    "document",
    [
        {"tasks": {"a": {"depend_on": ["b"]}}},
        {"tasks": {"a": {"type": "shell"}}},
        {"tasks": {"a": {"retries": -1}}},
        {"tasks": {"a": {"trigger_rule": "sometimes"}}},
        {"shedule": "@daily", "tasks": {"a": {}}},
        {"tasks": {}},
    ],
)
def test_schema_rejects_what_the_loader_rejects(document):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema())
    with pytest.raises(DagValidationError):
        load(json.dumps(document))


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("1.5G", int(1.5 * 2**30)), (4096, 4096)],
)
def test_memory_limits(text, size):
    dag = load(f"tasks: {{a: {{memory_limit: {json.dumps(text)}, cpu_time_limit: 90s}}}}")
    assert dag.get_task("a").memory_limit == size
    assert dag.get_task("a").cpu_time_limit == 90


def test_several_templates_in_one_kwarg_validate_and_are_kept():
    dag = load(
        'tasks:\n  a: {type: python, callable: "m:f", kwargs: {s: "{{ run_id }} {{ task_id }} {{ try_number }}"}}\n'
    )
    assert dag.get_task("a").config["kwargs"]["s"] == "{{ run_id }} {{ task_id }} {{ try_number }}"
