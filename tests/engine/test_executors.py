"""What a task sees is the same wherever it runs: one suite over every executor mode (a thread
of the engine, a warm worker process, a fresh interpreter per try, a Celery worker on
Redis)."""

from __future__ import annotations

import os
import textwrap

import pytest

from pipeline_core.dag.bag import load_folder
from pipeline_core.model import TaskKey, TriggerRequest
from pipeline_core.state import RunState
from tests.engine.conftest import dag_from

T = "tests.fixtures"
MODES = [pytest.param(m, id=m) for m in ("thread", "worker", "process", "celery")]


def log_text(harness, run, task_id: str, try_number: int = 1) -> str:  # type: ignore[no-untyped-def]
    return harness.store.task_data.read_log(TaskKey("t", run.run_id, task_id), try_number).text


@pytest.mark.parametrize("mode", MODES)
def test_the_task_context_works_in_every_mode(harness, mode):
    dag = dag_from(
        f"""
        tasks:
          ctx: {{type: python, callable: "{T}:with_context", executor: {mode}}}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t", {"colour": "blue"})))
    assert run.state is RunState.SUCCESS
    key = TaskKey("t", run.run_id, "ctx")
    returned = harness.store.task_data.get_xcom(key, "return_value").value
    assert returned == {"run_id": run.run_id, "conf": {"colour": "blue"}, "ds": returned["ds"]}
    assert harness.store.task_data.get_xcom(key, "extra").value == {"task": "ctx", "try": 1}
    text = log_text(harness, run, "ctx")
    assert "hello from the task log" in text and "printed line" in text


@pytest.mark.parametrize("mode", MODES)
def test_templates_and_xcom_pull_work_in_every_mode(harness, mode):
    dag = dag_from(
        f"""
        tasks:
          a: {{type: python, callable: "{T}:add", kwargs: {{a: 2, b: 3}}, executor: {mode}}}
          b:
            type: python
            callable: "{T}:add"
            kwargs: {{a: "{{{{ xcom.a.return_value }}}}", b: 10}}
            depends_on: [a]
            executor: {mode}
          c:
            type: python
            callable: "{T}:track"
            kwargs: {{name: "{{{{ run_id }}}} {{{{ task_id }}}} {{{{ try_number }}}}", seconds: 0}}
            depends_on: [b]
            executor: {mode}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t", run_id="r1")))
    assert run.state is RunState.SUCCESS, harness.states(run)
    assert harness.store.task_data.get_xcom(TaskKey("t", "r1", "b"), "return_value").value == 15
    assert (
        harness.store.task_data.get_xcom(TaskKey("t", "r1", "c"), "return_value").value == "r1 c 1"
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(f'callable: "{T}:not_json"', "not JSON-serialisable", id="not-json"),
        pytest.param(f'callable: "{T}:huge", kwargs: {{size: 5000}}', "over the", id="too-big"),
        pytest.param('callable: "no_such_module_xyz:f"', "cannot import callable", id="import"),
        pytest.param(f'callable: "{T}:no_such_function"', "cannot import callable", id="attr"),
        pytest.param(f'callable: "{T}:boom"', "ValueError: boom", id="raises"),
    ],
)
def test_bad_callables_fail_their_try_with_the_same_message_in_every_mode(
    harness, mode, body, message
):
    dag = dag_from(
        f"""
        tasks:
          bad: {{type: python, {body}, executor: {mode}}}
          fine: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 1}}, executor: {mode}}}
        """
    )
    engine = harness.start(dag, default_executor=mode, xcom_max_bytes=1000)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert harness.states(run) == {"bad": "failed", "fine": "success"}
    assert message in harness.ti(run, "bad").error


@pytest.mark.parametrize("mode", MODES)
def test_retries_count_tries_across_processes(harness, mode, tmp_path):
    counter = tmp_path / "calls"
    dag = dag_from(
        f"""
        tasks:
          flaky:
            type: python
            callable: "{T}:count_try"
            kwargs: {{path: "{counter}", fail_first: 2}}
            retries: 2
            executor: {mode}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    assert harness.ti(run, "flaky").try_number == 3
    assert "call 1 fails" in log_text(harness, run, "flaky", 1) or mode == "thread"


@pytest.mark.parametrize("mode", MODES)
def test_functions_of_a_python_dag_file_run_in_every_mode(harness, mode, tmp_path):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "authored.py").write_text(
        textwrap.dedent(
            f"""
            from pipeline_core.dag.authoring import DAG, task

            with DAG("t", default_args={{"executor": "{mode}"}}) as dag:
                @task
                def extract(context=None):
                    print("extracting")
                    return {{"rows": 3}}

                @task
                def load(data):
                    return data["rows"] * 2

                load(extract())
            """
        )
    )
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    engine = harness.start(bag.dags["t"], default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS, harness.ti(run, "extract").error
    assert (
        harness.store.task_data.get_xcom(TaskKey("t", run.run_id, "load"), "return_value").value
        == 6
    )
    assert "extracting" in log_text(harness, run, "extract")


@pytest.mark.parametrize("mode", MODES)
def test_shell_tasks_and_branches_and_sensors_in_every_mode(harness, mode, tmp_path):
    flag = tmp_path / "flag"
    flag.write_text("")
    dag = dag_from(
        f"""
        default_args: {{executor: {mode}}}
        tasks:
          sh: {{type: shell, command: "echo one; echo '{{\\"n\\": 7}}'"}}
          pick: {{type: branch, callable: "{T}:choose", depends_on: [sh]}}
          left: {{type: sensor, poke: "{T}:flag_file_exists", kwargs: {{path: "{flag}"}},
                  depends_on: [pick]}}
          right: {{type: noop, depends_on: [pick]}}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t", {"go": "left"})))
    assert harness.states(run) == {
        "sh": "success",
        "pick": "success",
        "left": "success",
        "right": "skipped",
    }
    assert harness.store.task_data.get_xcom(
        TaskKey("t", run.run_id, "sh"), "return_value"
    ).value == {"n": 7}
    assert "one" in log_text(harness, run, "sh")


@pytest.mark.parametrize(("mode", "distinct"), [("worker", 1), ("process", 3)])
def test_an_engine_default_puts_every_try_where_it_says(harness, mode, distinct):
    tasks = "\n".join(
        f'  p{i}: {{type: python, callable: "os:getpid"{f", depends_on: [p{i - 1}]" if i else ""}}}'
        for i in range(3)
    )
    engine = harness.start(dag_from(f"tasks:\n{tasks}\n"), default_executor=mode, workers=2)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    pids = {harness.store.task_data.get_xcom(TaskKey("t", run.run_id, f"p{i}"), "return_value").value
            for i in range(3)}  # fmt: skip
    assert len(pids) == distinct and os.getpid() not in pids


def test_modules_beside_dag_files_loaded_after_the_pool_started_import_in_workers(
    harness, tmp_path
):
    engine = harness.start(default_executor="worker")  # the pool starts before the folder loads
    folder = tmp_path / "late_dags"
    folder.mkdir()
    (folder / "helpers_beside_dags.py").write_text("def triple(x):\n    return 3 * x\n")
    (folder / "late.yaml").write_text(
        "dag_id: t\ntasks:\n"
        '  a: {type: python, callable: "helpers_beside_dags:triple", kwargs: {x: 5}}\n'
    )
    bag = load_folder(folder)
    assert not bag.errors, bag.errors
    engine.set_dags(bag.dags)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS, harness.ti(run, "a").error
    assert (
        harness.store.task_data.get_xcom(TaskKey("t", run.run_id, "a"), "return_value").value == 15
    )
