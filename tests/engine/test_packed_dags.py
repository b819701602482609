"""Runs of DAGs whose tasks are kept packed (``dag.packed``): the engine reads them again
whenever they were given back meanwhile, in this process and in the workers."""

from __future__ import annotations

import pytest

from pipeline_core.dag import packed
from pipeline_core.dag.packed import is_decoded, pack
from pipeline_core.model import TriggerRequest
from pipeline_core.state import RunState, TaskState
from tests.engine.conftest import Harness, dag_from


def test_a_run_finishes_after_its_dags_tasks_were_given_back_mid_run(
    harness: Harness, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(packed.DECODED, "size", 2)
    gate = tmp_path / "gate"
    dag = dag_from(
        f"""
        tasks:
          wait: {{type: shell, command: "while [ ! -f {gate} ]; do sleep 0.01; done"}}
          after: {{type: python, callable: "tests.fixtures:add", kwargs: {{a: 1, b: 2}}, depends_on: [wait]}}
          last: {{type: noop, depends_on: [after]}}
        """,
        "p",
    )
    others = [dag_from("tasks: {a: {}}", f"o{i}") for i in range(3)]
    for each in (dag, *others):
        assert pack(each)
    engine = harness.start(dag, *others, default_executor="worker")
    run = engine.trigger(TriggerRequest("p"))
    harness.wait_for(lambda: harness.ti(run, "wait").state is TaskState.RUNNING)
    for other in others:
        assert other.tasks  # read since: the running DAG's tasks are given back
    assert not is_decoded(dag)
    gate.touch()
    assert harness.wait_run(run).state is RunState.SUCCESS
    assert [harness.ti(run, t).state for t in ("wait", "after", "last")] == [TaskState.SUCCESS] * 3
