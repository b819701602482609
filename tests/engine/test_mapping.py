"""Dynamic task mapping through a real engine: expansion from an upstream's XCom, the conf or
a literal, the reducer's list, empty and wrong values, limits, retries of one instance,
marks and clears, over every executor."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline_core.model import TaskKey, TriggerRequest
from pipeline_core.state import RunState, TaskState
from pipeline_core.store.types import TaskInstanceQuery
from tests.engine.conftest import Harness, dag_from

REDUCE = """
    dag_id: m
    tasks:
      make: {type: python, callable: "tests.fixtures:numbers", kwargs: {n: 5}}
      double:
        type: python
        callable: "tests.fixtures:scale"
        depends_on: [make]
        kwargs: {factor: 2}
        expand: {x: "{{ xcom.make.return_value }}"}
        retries: 1
      sum:
        type: python
        callable: "tests.fixtures:total"
        depends_on: [double]
        kwargs: {values: "{{ xcom.double.return_value }}"}
"""


def failing_on(bad: int, xs: list[int], retries: int = 0) -> Any:
    """``each`` mapped over ``xs``, failing for ``bad``; ``after`` downstream of it."""
    return dag_from(
        f"""
        dag_id: m
        tasks:
          each:
            type: python
            callable: "tests.fixtures:fail_on"
            kwargs: {{bad: {bad}}}
            expand: {{x: {xs}}}
            retries: {retries}
          after: {{type: noop, depends_on: [each]}}
        """
    )


def instances(h: Harness, run: Any, task_id: str) -> list[Any]:
    page = h.store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, mapped=True,
                          limit=100_000)
    )  # fmt: skip
    return list(page.items)


def xcom(h: Harness, run: Any, task_id: str, map_index: int = -1) -> Any:
    entry = h.store.task_data.get_xcom(
        TaskKey(run.dag_id, run.run_id, task_id, map_index), "return_value"
    )
    return None if entry is None else entry.value


@pytest.mark.parametrize("executor", ["thread", "worker", "celery"])
def test_a_mapped_task_runs_once_per_element_and_its_reducer_gets_their_list(
    harness: Harness, executor: str
) -> None:
    dag = dag_from(REDUCE)
    harness.start(dag, default_executor=executor)
    run = harness.engine.trigger(TriggerRequest("m"))  # type: ignore[union-attr]
    done = harness.wait_run(run, timeout=60)
    assert done.state is RunState.SUCCESS
    listed = instances(harness, run, "double")
    assert [ti.map_index for ti in listed] == [0, 1, 2, 3, 4]
    assert {ti.state for ti in listed} == {TaskState.SUCCESS}
    assert [xcom(harness, run, "double", i) for i in range(5)] == [0, 2, 4, 6, 8]
    assert xcom(harness, run, "sum") == 20
    assert harness.states(run)["double"] == "success"


def test_several_keys_give_the_cross_product_and_zip_pairs_them(harness: Harness) -> None:
    dag = dag_from(
        """
        dag_id: m
        tasks:
          product:
            type: python
            callable: "tests.fixtures:scale"
            expand: {x: [1, 2, 3], factor: [10, 100]}
          paired:
            type: python
            callable: "tests.fixtures:scale"
            expand: {x: [1, 2, 3], factor: "{{ dag_run.conf.factors }}"}
            expand_mode: zip
          by_kwargs:
            type: python
            callable: "tests.fixtures:scale"
            expand: {kwargs: "{{ dag_run.conf.calls }}"}
            expand_mode: kwargs
          echo:
            type: shell
            command: "echo {{ map_index }}:{{ map.word }}"
            expand: {word: [a, b]}
        """
    )
    harness.start(dag)
    conf = {"factors": [5, 6], "calls": [{"x": 7}, {"x": 2, "factor": 3}]}
    run = harness.engine.trigger(TriggerRequest("m", conf=conf))  # type: ignore[union-attr]
    assert harness.wait_run(run).state is RunState.SUCCESS
    assert [xcom(harness, run, "product", i) for i in range(6)] == [10, 100, 20, 200, 30, 300]
    assert len(instances(harness, run, "paired")) == 2  # as long as the shorter list
    assert [xcom(harness, run, "paired", i) for i in range(2)] == [5, 12]
    assert [xcom(harness, run, "by_kwargs", i) for i in range(2)] == [7, 6]
    assert [xcom(harness, run, "echo", i) for i in range(2)] == ["0:a", "1:b"]


def test_an_empty_list_skips_the_task_and_its_downstream_follows_the_rules(
    harness: Harness,
) -> None:
    dag = dag_from(
        """
        dag_id: m
        tasks:
          make: {type: python, callable: "tests.fixtures:numbers", kwargs: {n: 0}}
          each:
            type: python
            callable: "tests.fixtures:scale"
            depends_on: [make]
            expand: {x: "{{ xcom.make.return_value }}"}
          after: {type: noop, depends_on: [each]}
          anyway: {type: noop, depends_on: [each], trigger_rule: all_done}
        """
    )
    harness.start(dag)
    run = harness.engine.trigger(TriggerRequest("m"))  # type: ignore[union-attr]
    assert harness.wait_run(run).state is RunState.SUCCESS
    states = harness.states(run)
    assert states == {"make": "success", "each": "skipped", "after": "skipped",
                      "anyway": "success"}  # fmt: skip
    assert instances(harness, run, "each") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1}, "must be a list to map over, got dict"),
        ("a.csv", "must be a list to map over, got str"),
        (list(range(11)), "11 instances to map, more than max_map_length 10"),
    ],
)
def test_values_that_cannot_be_mapped_fail_the_task_naming_where_they_came_from(
    harness: Harness, value: Any, expected: str
) -> None:
    dag = dag_from(
        """
        dag_id: m
        tasks:
          make:
            type: python
            callable: "tests.fixtures:value_of"
            kwargs: {value: "{{ dag_run.conf.v }}"}
          each:
            type: python
            callable: "tests.fixtures:scale"
            depends_on: [make]
            expand: {x: "{{ xcom.make.return_value }}"}
            max_map_length: 10
            retries: 3
          after: {type: noop, depends_on: [each]}
        """
    )
    harness.start(dag)
    run = harness.engine.trigger(TriggerRequest("m", conf={"v": value}))  # type: ignore[union-attr]
    assert harness.wait_run(run).state is RunState.FAILED
    each = harness.ti(run, "each")
    assert each.state is TaskState.FAILED
    assert expected in each.error
    assert "xcom.make.return_value" in each.error or "max_map_length" in expected
    assert each.try_number == 1  # a retry would not change the values
    assert harness.states(run)["after"] == "upstream_failed"
    assert instances(harness, run, "each") == []


def test_ten_thousand_and_one_values_are_over_the_default_limit(harness: Harness) -> None:
    dag = dag_from(
        """
        dag_id: m
        tasks:
          each: {type: python, callable: "tests.fixtures:scale", expand: {x: "{{ dag_run.conf.xs }}"}}
        """
    )
    harness.start(dag)
    conf = {"xs": list(range(10_001))}
    run = harness.engine.trigger(TriggerRequest("m", conf=conf))  # type: ignore[union-attr]
    assert harness.wait_run(run).state is RunState.FAILED
    error = harness.ti(run, "each").error
    assert "10,001 instances to map, more than max_map_length 10,000" in error
    assert instances(harness, run, "each") == []


def test_the_engine_limit_applies_unless_the_task_sets_its_own(harness: Harness) -> None:
    dag = dag_from(
        """
        dag_id: m
        tasks:
          each: {type: python, callable: "tests.fixtures:scale", expand: {x: [1, 2, 3, 4]}}
        """
    )
    harness.start(dag, max_map_length=3)
    run = harness.engine.trigger(TriggerRequest("m"))  # type: ignore[union-attr]
    assert harness.wait_run(run).state is RunState.FAILED
    assert "4 instances to map, more than max_map_length 3" in harness.ti(run, "each").error


def test_a_failing_instance_retries_alone_and_fails_its_task(harness: Harness) -> None:
    dag = failing_on(2, [0, 1, 2, 3], retries=2)
    harness.start(dag)
    run = harness.engine.trigger(TriggerRequest("m"))  # type: ignore[union-attr]
    assert harness.wait_run(run).state is RunState.FAILED
    listed = instances(harness, run, "each")
    assert [ti.state for ti in listed] == [TaskState.SUCCESS, TaskState.SUCCESS,
                                           TaskState.FAILED, TaskState.SUCCESS]  # fmt: skip
    assert [ti.try_number for ti in listed] == [1, 1, 3, 1]
    assert "2 is bad" in listed[2].error
    each = harness.ti(run, "each")
    assert each.state is TaskState.FAILED and "1 of 4 mapped instances" in each.error
    assert harness.states(run)["after"] == "upstream_failed"


def test_max_active_per_task_bounds_the_instances_running_at_once(harness: Harness) -> None:
    from tests import fixtures

    dag = dag_from(
        """
        dag_id: m
        concurrency: 16
        tasks:
          each:
            type: python
            callable: "tests.fixtures:track"
            expand: {name: [a, b, c, d, e, f, g, h]}
            max_active_per_task: 2
        """
    )
    harness.start(dag, max_workers=16)
    run = harness.engine.trigger(TriggerRequest("m"))  # type: ignore[union-attr]
    assert harness.wait_run(run).state is RunState.SUCCESS
    assert fixtures.counts["peak"] == 2
    assert sorted(fixtures.order) == list("abcdefgh")


def test_one_instance_can_be_marked_and_cleared_and_its_task_follows(harness: Harness) -> None:
    dag = failing_on(1, [0, 1, 2])
    engine = harness.start(dag)
    run = engine.trigger(TriggerRequest("m"))
    assert harness.wait_run(run).state is RunState.FAILED
    marked = engine.mark_task("m", run.run_id, "each", TaskState.SUCCESS, map_index=1)
    assert marked.state is RunState.FAILED  # its leaf stays upstream_failed until cleared
    assert harness.ti(run, "each").state is TaskState.SUCCESS
    assert instances(harness, run, "each")[1].state is TaskState.SUCCESS
    # run index 0 again: its task runs again while it does, and its downstream after it
    engine.retry("m", run.run_id, ["each"], map_index=0)
    assert harness.wait_run(run).state is RunState.SUCCESS
    first = instances(harness, run, "each")[0]
    assert first.state is TaskState.SUCCESS and first.try_number == 2
    assert harness.states(run) == {"each": "success", "after": "success"}


def test_clearing_a_mapped_task_maps_it_again_over_the_new_values(harness: Harness) -> None:
    dag = dag_from(
        """
        dag_id: m
        tasks:
          each:
            type: python
            callable: "tests.fixtures:scale"
            expand: {x: "{{ dag_run.conf.xs }}"}
        """
    )
    engine = harness.start(dag)
    run = engine.trigger(TriggerRequest("m", conf={"xs": [1, 2, 3]}))
    assert harness.wait_run(run).state is RunState.SUCCESS
    engine.retry("m", run.run_id, ["each"])
    assert harness.wait_run(run).state is RunState.SUCCESS
    listed = instances(harness, run, "each")
    assert [ti.try_number for ti in listed] == [2, 2, 2]


def test_an_instance_whose_process_dies_is_retried_alone(harness: Harness) -> None:
    folder = harness.tmp_path / "calls"
    folder.mkdir()
    dag = dag_from(
        f"""
        dag_id: m
        tasks:
          each:
            type: python
            callable: "tests.fixtures:crash_on"
            kwargs: {{crash: 2, folder: "{folder}"}}
            expand: {{x: [0, 1, 2, 3]}}
            retries: 1
        """
    )
    harness.start(dag, default_executor="worker")
    run = harness.engine.trigger(TriggerRequest("m"))  # type: ignore[union-attr]
    assert harness.wait_run(run, timeout=60).state is RunState.SUCCESS
    listed = instances(harness, run, "each")
    assert [ti.try_number for ti in listed] == [1, 1, 2, 1]
    assert [xcom(harness, run, "each", i) for i in range(4)] == [0, 1, 2, 3]
    assert sorted(p.name for p in folder.iterdir()) == [f"calls-{i}" for i in range(4)]
    assert (folder / "calls-2").stat().st_size == 2 and (folder / "calls-0").stat().st_size == 1
