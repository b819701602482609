"""A DAG file edited while its runs are in flight: each run keeps the version it was made
with — through the end of the run, a restart of the engine and a clear afterwards — on a
thread, a warm worker and a Celery worker; ``use_latest`` moves a run to the new version;
a version whose code is gone fails its try naming the version."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline_core.dag.model import DAG
from pipeline_core.engine.orchestrator import Engine
from pipeline_core.model import TaskKey, TriggerRequest
from pipeline_core.scheduler.sync import DagSync
from tests.engine.conftest import Harness

V1 = """
tasks:
  gate: {{type: shell, command: 'while [ ! -e "{flag}" ]; do sleep 0.02; done'}}
  old: {{type: shell, command: "echo made-by-v1", depends_on: [gate]}}
  tail: {{type: shell, command: "echo tail-v1", depends_on: [old]}}
"""
V2 = """
tasks:
  gate: {{type: shell, command: 'while [ ! -e "{flag}" ]; do sleep 0.02; done'}}
  tail: {{type: shell, command: "echo tail-v2", depends_on: [gate]}}
  new: {{type: shell, command: "echo made-by-v2", depends_on: [tail]}}
"""


def _write(folder: Path, text: str, flag: Path) -> None:
    (folder / "edited.yaml").write_text(textwrap.dedent(text.format(flag=flag)))


def _restart(harness: Harness, engine: Engine, dags: dict[str, DAG]) -> Engine:
    """A new engine over the same store and executor settings (a Celery worker stays)."""
    engine.stop()
    harness.engine = Engine(harness.store, dags, settings=engine.settings).start()
    return harness.engine


def _xcom(harness: Harness, run_id: str, task_id: str) -> object:
    entry = harness.store.task_data.get_xcom(TaskKey("edited", run_id, task_id), "return_value")
    return entry.value if entry is not None else None


@pytest.mark.parametrize("executor", ["thread", "worker", "celery"])
def test_a_dag_file_edited_mid_run(harness: Harness, tmp_path: Path, executor: str) -> None:
    folder, flag = tmp_path / "dags", tmp_path / "open"
    folder.mkdir()
    _write(folder, V1, flag)
    sync = DagSync(harness.store, folder)
    first = sync.refresh()
    engine = harness.start(*first.values(), default_executor=executor)
    run = engine.trigger(TriggerRequest("edited", run_id="r1"))
    harness.wait_for(lambda: harness.states(run)["gate"] == "running")
    _write(folder, V2, flag)
    second = sync.refresh()
    engine.set_dags(second)
    flag.touch()
    assert harness.wait_run(run, timeout=30).state.value == "success"
    assert harness.states(run) == {"gate": "success", "old": "success", "tail": "success"}
    assert _xcom(harness, "r1", "tail") == "tail-v1"
    stored = harness.store.runs.get_run("edited", "r1")
    assert stored.dag_version == first["edited"].version != second["edited"].version

    # A new engine holds only the new version; a clear of the run still runs the old one
    # (rebuilt from the text the store kept).
    engine = _restart(harness, engine, second)
    engine.retry("edited", "r1", ["old"], include_downstream=True)
    assert harness.wait_run(run, timeout=30).state.value == "success"
    assert harness.ti(run, "old").try_number == 2 and harness.ti(run, "tail").try_number == 2
    assert _xcom(harness, "r1", "tail") == "tail-v1"
    assert "new" not in harness.states(run)

    # use_latest: the run takes the new version, its new task joins and runs.
    _, requeued = engine.retry("edited", "r1", ["tail"], use_latest=True)
    assert requeued == ["tail"]
    assert harness.wait_run(run, timeout=30).state.value == "success"
    assert harness.states(run)["new"] == "success"
    assert _xcom(harness, "r1", "tail") == "tail-v2"
    assert harness.store.runs.get_run("edited", "r1").dag_version == second["edited"].version
    later = harness.wait_run(engine.trigger(TriggerRequest("edited", run_id="r2")), timeout=30)
    assert set(harness.states(later)) == {"gate", "tail", "new"}


def test_python_dag_file_versions_run_their_own_code_on_a_worker(
    harness: Harness, tmp_path: Path
) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    source = """
        from pipeline_core.dag.model import DAG, Task

        def step():
            return "{said}"

        dag = DAG("pyver", (Task("step", type="python", config={{"callable": step}}),))
    """
    path = folder / "pyver.py"
    path.write_text(textwrap.dedent(source.format(said="first")))
    sync = DagSync(harness.store, folder)
    first = sync.refresh()
    engine = harness.start(*first.values(), default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("pyver", run_id="r1")), timeout=30)
    path.write_text(textwrap.dedent(source.format(said="second")))
    second = sync.refresh()
    engine = _restart(harness, engine, second)
    engine.retry("pyver", "r1", ["step"])
    assert harness.wait_run(run, timeout=30).state.value == "success", harness.ti(run, "step").error
    got = harness.store.task_data.get_xcom(TaskKey("pyver", "r1", "step"), "return_value")
    assert got is not None and got.value == "first"  # the run's version, from its text
    new = harness.wait_run(engine.trigger(TriggerRequest("pyver", run_id="r2")), timeout=30)
    got = harness.store.task_data.get_xcom(TaskKey("pyver", new.run_id, "step"), "return_value")
    assert got is not None and got.value == "second"


def test_a_version_whose_callable_is_gone_fails_its_try_naming_the_version(
    harness: Harness, tmp_path: Path
) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    helper = folder / "gone_helpers_v1.py"
    helper.write_text("def work():\n    return 1\n")
    (folder / "usesgone.yaml").write_text(
        "tasks:\n  work: {type: python, callable: 'gone_helpers_v1:work'}\n"
    )
    sync = DagSync(harness.store, folder)
    first = sync.refresh()
    engine = harness.start(*first.values(), default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("usesgone", run_id="r1")), timeout=30)
    assert run.state.value == "success", harness.ti(run, "work").error
    helper.unlink()
    (folder / "usesgone.yaml").write_text("tasks:\n  work: {type: noop}\n")
    second = sync.refresh()
    engine = _restart(harness, engine, second)
    engine.retry("usesgone", "r1", ["work"])
    assert harness.wait_run(run, timeout=30).state.value == "failed"
    error = harness.ti(run, "work").error or ""
    version = first["usesgone"].version[:12]
    assert "gone_helpers_v1" in error and f"version {version}" in error, error
