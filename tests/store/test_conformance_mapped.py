"""Mapped task instances on every backend: a task expanded into instances 0… in one write,
each instance its own row, moves, XComs and logs, the task's own instance (-1) beside them,
and nothing expanded twice."""

from __future__ import annotations

import pytest

from pipeline_core.errors import Conflict, InvalidRequest, NotFound
from pipeline_core.model import ExpandTask, TaskChange, TaskKey
from pipeline_core.state import TaskState
from pipeline_core.store.types import EventQuery, TaskInstanceQuery
from tests.store.helpers import key, new_run


def instance(index: int, task_id: str = "b") -> TaskKey:
    return TaskKey("etl", "r1", task_id, index)


def expand(store, count: int, task_id: str = "b") -> None:  # type: ignore[no-untyped-def]
    store.runs.apply([ExpandTask(key(task_id), count, max_tries=3, pool="p", priority_weight=5)])


def test_an_expansion_makes_every_instance_in_one_write_with_one_event(store) -> None:
    new_run(store)
    expand(store, 4)
    mapped = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id="etl", run_id="r1", task_id="b", mapped=True)
    )
    assert [ti.map_index for ti in mapped.items] == [0, 1, 2, 3] and mapped.total == 4
    first = mapped.items[0]
    assert (first.state, first.try_number, first.max_tries, first.pool, first.priority_weight) == (
        TaskState.QUEUED,
        0,
        3,
        "p",
        5,
    )
    own = store.tasks.query_task_instances(TaskInstanceQuery(dag_id="etl", mapped=False))
    assert [(ti.task_id, ti.map_index) for ti in own.items] == [("a", -1), ("b", -1), ("c", -1)]
    everything = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id="etl", run_id="r1", mapped=None)
    )
    assert [(ti.task_id, ti.map_index) for ti in everything.items] == [
        ("a", -1),
        ("b", -1),
        ("b", 0),
        ("b", 1),
        ("b", 2),
        ("b", 3),
        ("c", -1),
    ]
    [event] = store.events.read_events(EventQuery(types=("task.expanded",)))
    assert (event.task_id, event.payload["count"], event.payload["map_index"]) == ("b", 4, -1)


def test_each_instance_moves_keeps_xcom_and_logs_of_its_own(store) -> None:
    new_run(store)
    expand(store, 3)
    store.tasks.transition_tasks(
        [
            TaskChange(instance(1), TaskState.QUEUED, TaskState.RUNNING, try_number=1),
            TaskChange(instance(2), TaskState.QUEUED, TaskState.RUNNING, try_number=1),
        ]
    )
    [moved] = store.tasks.transition_tasks(
        [TaskChange(instance(1), TaskState.RUNNING, TaskState.FAILED, error="one of them")]
    )
    assert (moved.map_index, moved.state, moved.error) == (1, TaskState.FAILED, "one of them")
    assert store.tasks.get_task_instance(instance(2)).state is TaskState.RUNNING
    assert store.tasks.get_task_instance(key("b")).state is TaskState.QUEUED  # its own row
    changes = store.events.read_events(EventQuery(types=("task.state_changed",)))
    assert [e.payload["map_index"] for e in changes] == [1, 2, 1]
    for index in (1, 2):
        store.task_data.set_xcom(instance(index), "return_value", index * 10)
        store.task_data.append_log(instance(index), 1, f"instance {index}\n")
    assert store.task_data.get_xcom(instance(2), "return_value").value == 20
    assert store.task_data.get_xcom(instance(2), "return_value").map_index == 2
    assert store.task_data.get_xcom(key("b"), "return_value") is None
    assert store.task_data.read_log(instance(1), 1).text == "instance 1\n"
    assert store.task_data.read_log(instance(0), 1).text == ""
    with pytest.raises(NotFound):
        store.task_data.set_xcom(instance(7), "return_value", 1)
    assert store.tasks.mapped_counts("etl", "r1") == {"b": {"queued": 1, "running": 1, "failed": 1}}


def test_a_task_is_expanded_once_and_only_by_its_own_instance(store) -> None:
    new_run(store)
    expand(store, 2)
    with pytest.raises(Conflict, match="already expanded"):
        expand(store, 2)
    with pytest.raises(NotFound):
        store.runs.apply([ExpandTask(instance(0), 2)])
    with pytest.raises(NotFound):
        store.runs.apply([ExpandTask(TaskKey("etl", "r1", "ghost"), 2)])
    assert store.tasks.query_task_instances(TaskInstanceQuery(mapped=True)).total == 2
    with pytest.raises(InvalidRequest, match="at least one"):
        expand(store, 0, "c")  # an empty list skips the task: there is nothing to expand
    assert store.tasks.mapped_counts("etl", "r1") == {"b": {"queued": 2}}


def test_ten_thousand_instances_in_one_write(store) -> None:
    new_run(store)
    expand(store, 10_000)
    page = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id="etl", run_id="r1", task_id="b", mapped=True, offset=9_900)
    )
    assert page.total == 10_000 and [ti.map_index for ti in page.items][:2] == [9_900, 9_901]


def test_a_reducer_reads_what_the_instances_pushed_as_one_list_in_index_order(store) -> None:
    new_run(store)
    expand(store, 12)
    for index in (11, 2, 0, 10):  # written out of order; index 1 and the rest push nothing
        store.task_data.set_xcom(instance(index), "return_value", {"i": index})
    store.task_data.set_xcom(instance(3), "other", "not this key")
    entry = store.task_data.get_mapped_xcom(key("b"), "return_value")
    assert entry.value == [{"i": 0}, {"i": 2}, {"i": 10}, {"i": 11}]
    assert (entry.task_id, entry.map_index, entry.key) == ("b", -1, "return_value")
    assert store.task_data.get_mapped_xcom(key("c"), "return_value").value == []


def test_a_task_mapped_again_grows_by_the_new_indexes_only(store) -> None:
    new_run(store)
    expand(store, 3)
    store.runs.apply([ExpandTask(key("b"), 5, max_tries=2, first=3)])
    listed = store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id="etl", run_id="r1", task_id="b", mapped=True)
    ).items
    assert [(ti.map_index, ti.max_tries) for ti in listed] == [
        (0, 3),
        (1, 3),
        (2, 3),
        (3, 2),
        (4, 2),
    ]
    with pytest.raises(Conflict):
        store.runs.apply([ExpandTask(key("b"), 6, first=4)])  # index 4 exists
    with pytest.raises(InvalidRequest):
        store.runs.apply([ExpandTask(key("b"), 5, first=5)])  # nothing new


def test_the_grid_is_the_newest_runs_with_their_tasks_and_mapped_counts(store) -> None:
    for day in range(4):
        new_run(store, run_id=f"r{day}", day=day)
    expand(store, 3)  # task b of run r1 mapped into 3 instances
    shown = store.tasks.grid("etl", 3)
    assert [g.run.run_id for g in shown] == ["r3", "r2", "r1"]  # newest logical date first
    assert [ti.task_id for ti in shown[0].task_instances] == ["a", "b", "c"]
    assert all(ti.map_index == -1 for g in shown for ti in g.task_instances)
    assert shown[2].mapped == {"b": {"queued": 3}} and shown[0].mapped == {}
    assert store.tasks.grid("nope", 3) == []
