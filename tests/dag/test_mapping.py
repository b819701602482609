"""How a mapped task's values become its instances: product and zip, the index order, the
checks of what an upstream handed over. Pure; with property tests over random lists."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_core.dag.mapping import (
    Expansion,
    MappingError,
    all_values,
    checked_lists,
    length,
    parse_expansion,
    values_at,
)

FILES = "{{ xcom.list_files.return_value }}"


def test_one_key_maps_each_element_in_order() -> None:
    expansion = Expansion({"path": FILES})
    lists = checked_lists(expansion, {"path": ["a.csv", "b.csv", "c.csv"]})
    assert length(expansion, lists) == 3
    assert [values_at(expansion, lists, i) for i in range(3)] == [
        {"path": "a.csv"},
        {"path": "b.csv"},
        {"path": "c.csv"},
    ]


def test_several_keys_cross_with_the_last_varying_fastest() -> None:
    expansion = Expansion({"x": [1, 2], "y": ["a", "b", "c"]})
    lists = checked_lists(expansion, {"x": [1, 2], "y": ["a", "b", "c"]})
    assert length(expansion, lists) == 6
    assert all_values(expansion, lists) == [
        {"x": 1, "y": "a"}, {"x": 1, "y": "b"}, {"x": 1, "y": "c"},
        {"x": 2, "y": "a"}, {"x": 2, "y": "b"}, {"x": 2, "y": "c"},
    ]  # fmt: skip
    assert values_at(expansion, lists, 4) == {"x": 2, "y": "b"}


def test_zip_pairs_elements_and_stops_at_the_shortest() -> None:
    expansion = Expansion({"x": [], "y": []}, mode="zip")
    lists = checked_lists(expansion, {"x": [1, 2, 3], "y": ["a", "b"]})
    assert length(expansion, lists) == 2
    assert all_values(expansion, lists) == [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}]
    with pytest.raises(IndexError):
        values_at(expansion, lists, 2)


def test_an_empty_list_maps_nothing() -> None:
    expansion = Expansion({"x": FILES, "y": [1, 2]})
    lists = checked_lists(expansion, {"x": [], "y": [1, 2]})
    assert length(expansion, lists) == 0 and all_values(expansion, lists) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": 1}, f"expand key 'path' (from {FILES}) must be a list to map over, got dict"),
        ("a.csv", "got str"),
        (None, "got NoneType"),
        (42, "got int"),
    ],
)
def test_a_value_that_is_not_a_list_names_the_key_its_source_and_type(
    value: object, message: str
) -> None:
    with pytest.raises(MappingError, match=re.escape(message)):
        checked_lists(Expansion({"path": FILES}), {"path": value})


def test_more_instances_than_the_limit_are_refused() -> None:
    expansion = Expansion({"x": FILES})
    checked_lists(expansion, {"x": list(range(10_000))})
    with pytest.raises(
        MappingError, match="10,001 instances to map, more than max_map_length 10,000"
    ):
        checked_lists(expansion, {"x": list(range(10_001))})
    own = Expansion({"x": FILES, "y": [0, 1]}, max_length=5)
    with pytest.raises(MappingError, match="6 instances to map, more than max_map_length 5"):
        checked_lists(own, {"x": [1, 2, 3], "y": [0, 1]})
    assert checked_lists(expansion, {"x": list(range(20))}, limit=20)["x"][-1] == 19


def test_the_definition_survives_its_serialised_form() -> None:
    expansion = Expansion({"path": FILES, "n": [1, 2]}, mode="zip", max_length=50, max_active=4)
    assert Expansion.from_dict(expansion.to_dict()) == expansion
    assert Expansion.from_dict(Expansion({"p": FILES}).to_dict()).max_length is None


@given(
    st.lists(st.lists(st.integers(), max_size=5), min_size=1, max_size=3),
    st.sampled_from(["product", "zip"]),
)
def test_values_at_agrees_with_the_whole_list(columns: list[list[int]], mode: str) -> None:
    keys = [f"k{i}" for i in range(len(columns))]
    expansion = Expansion(dict.fromkeys(keys, FILES), mode=mode)
    lists = checked_lists(expansion, dict(zip(keys, columns, strict=True)))
    everything = all_values(expansion, lists)
    assert len(everything) == length(expansion, lists)
    assert [values_at(expansion, lists, i) for i in range(len(everything))] == everything


def parse(task: dict[str, object], task_type: str = "python") -> tuple[object, list[str]]:
    problems: list[str] = []
    found = parse_expansion(
        task, task_type, ("tasks", "load"), lambda keys, m: problems.append(f"{keys}: {m}")
    )
    return found, problems


def test_a_task_without_expand_has_no_expansion() -> None:
    assert parse({"callable": "lib:load"}) == (None, [])


def test_the_settings_of_a_mapped_task_are_read() -> None:
    found, problems = parse(
        {
            "kwargs": {"table": "raw"},
            "expand": {"path": FILES, "n": [1, 2], "mode": "{{ dag_run.conf.modes }}"},
            "expand_mode": "zip",
            "max_map_length": 500,
            "max_active_per_task": 4,
        }
    )
    assert problems == []
    assert found == Expansion(
        {"path": FILES, "n": [1, 2], "mode": "{{ dag_run.conf.modes }}"}, "zip", 500, 4
    )


@pytest.mark.parametrize(
    ("task", "task_type", "where", "message"),
    [
        ({"expand": {"x": [1]}}, "noop", "'expand')", "a noop task runs no code to map"),
        ({"expand": []}, "python", "'expand')", "expected a mapping of keys"),
        ({"expand": {}}, "python", "'expand')", "expected a mapping of keys"),
        ({"expand": {"x": 5}}, "shell", "'x')", "expected a list or a template"),
        ({"expand": {"x": "a.csv"}}, "shell", "'x')", "expected one template for the whole"),
        ({"expand": {"x": "f{{ run_id }}"}}, "shell", "'x')", "expected one template"),
        ({"expand": {"x": "{{ run_id }}"}}, "shell", "'x')", "is not a list: map over an XCom"),
        ({"expand": {"x": "{{ xcom.a }}"}}, "shell", "'x')", "needs xcom.<task>.<key>"),
        ({"expand": {"1x": [1]}}, "shell", "'1x')", "expand keys are names"),
        (
            {"kwargs": {"path": "a"}, "expand": {"path": FILES}},
            "python",
            "'path')",
            "'path' is both in kwargs and in expand",
        ),
        ({"expand": {"x": [1]}, "expand_mode": "cross"}, "shell", "'expand_mode')", "unknown"),
        ({"expand": {"x": [1]}, "max_map_length": 0}, "shell", "'max_map_length')", "from 1"),
        ({"expand": {"x": [1]}, "max_map_length": 2_000_000}, "shell", "length')", "1,000,000"),
        ({"expand": {"x": [1]}, "max_active_per_task": True}, "shell", "task')", "whole number"),
        ({"expand_mode": "zip"}, "shell", "'expand_mode')", "'expand_mode' needs 'expand'"),
        ({"max_active_per_task": 2}, "shell", "task')", "needs 'expand'"),
    ],
)
def test_bad_settings_are_reported_where_they_are(
    task: dict[str, object], task_type: str, where: str, message: str
) -> None:
    found, problems = parse(task, task_type)
    assert found is None
    assert len(problems) == 1, problems
    assert where in problems[0] and message in problems[0], problems
