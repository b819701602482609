import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_core.dag.graph import CycleError, Graph


def graph(**deps: list[str]) -> Graph:
    return Graph.from_edges(deps.items())


def assert_respects_edges(g: Graph, order: list[str]) -> None:
    position = {node: i for i, node in enumerate(order)}
    assert sorted(order) == sorted(g.nodes)
    for node, ups in g.upstream.items():
        for up in ups:
            assert position[up] < position[node]


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        pytest.param({"a": [], "b": ["a"], "c": ["b"]}, ["a", "b", "c"], id="chain"),
        pytest.param(
            {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}, ["a", "b", "c", "d"], id="diamond"
        ),
        pytest.param(
            {"s": [], **{f"t{i}": ["s"] for i in range(5)}, "e": [f"t{i}" for i in range(5)]},
            ["s", "t0", "t1", "t2", "t3", "t4", "e"],
            id="fan-out",
        ),
        pytest.param(
            {"a": [], "b": ["a"], "x": [], "y": ["x"]}, ["a", "x", "b", "y"], id="two-components"
        ),
        pytest.param({}, [], id="empty"),
        pytest.param({"c": ["b"], "b": ["a"], "a": []}, ["a", "b", "c"], id="declared-backwards"),
    ],
)
def test_topological_order(deps, expected):
    g = graph(**deps)
    order = g.topological_order()
    assert order == expected
    assert_respects_edges(g, order)


def test_order_is_deterministic():
    deps = {f"n{i}": [f"n{j}" for j in range(max(0, i - 3), i)] for i in range(50)}
    assert graph(**deps).topological_order() == graph(**deps).topological_order()


@pytest.mark.parametrize(
    ("deps", "cycle"),
    [
        ({"a": ["c"], "b": ["a"], "c": ["b"]}, ["a", "b", "c", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        ({"root": [], "x": ["root", "z"], "y": ["x"], "z": ["y"]}, ["x", "y", "z", "x"]),
    ],
)
def test_cycle_path(deps, cycle):
    g = graph(**deps)
    assert g.find_cycle() == cycle
    with pytest.raises(CycleError) as info:
        g.topological_order()
    assert info.value.path == cycle
    assert "->" in str(info.value)


def test_no_cycle():
    assert graph(a=[], b=["a"], c=["a", "b"]).find_cycle() is None


def test_roots_leaves_and_reachability():
    g = graph(a=[], b=["a"], c=["a"], d=["b", "c"], e=[])
    assert g.roots() == ["a", "e"]
    assert g.leaves() == ["d", "e"]
    assert g.upstream["d"] == ("b", "c")
    assert g.downstream["a"] == ("b", "c")
    assert g.ancestors("d") == {"a", "b", "c"}
    assert g.descendants("a") == {"b", "c", "d"}
    assert g.descendants("b", "c") == {"d"}
    assert g.ancestors("a") == set()


def test_dangling_and_repeated_upstream_are_dropped():
    g = graph(a=[], b=["a", "a", "ghost"])
    assert g.upstream["b"] == ("a",)


def test_long_chain_has_no_recursion_limit():
    n = 20_000
    deps = {"t0": []} | {f"t{i}": [f"t{i - 1}"] for i in range(1, n)}
    g = graph(**deps)
    assert g.topological_order()[-1] == f"t{n - 1}"
    deps["t0"] = [f"t{n - 1}"]
    cycle = graph(**deps).find_cycle()
    assert cycle is not None
    assert len(cycle) == n + 1


@st.composite
def random_dags(draw):
    n = draw(st.integers(min_value=0, max_value=40))
    names = [f"t{i}" for i in range(n)]
    deps = {}
    for i, name in enumerate(names):
        deps[name] = draw(st.lists(st.sampled_from(names[:i]), max_size=4)) if i else []
    order = draw(st.permutations(names))
    return {name: deps[name] for name in order}


@settings(max_examples=200, deadline=None)
@given(random_dags())
def test_random_dag_order_respects_every_edge(deps):
    g = graph(**deps)
    assert g.find_cycle() is None
    assert_respects_edges(g, g.topological_order())


@settings(max_examples=100, deadline=None)
@given(random_dags(), st.data())
def test_adding_a_back_edge_creates_a_reported_cycle(deps, data):
    g = graph(**deps)
    pairs = [(a, b) for b in g.nodes for a in g.ancestors(b)]
    if not pairs:
        return
    ancestor, descendant = data.draw(st.sampled_from(pairs))
    deps[ancestor] = [*deps[ancestor], descendant]
    cycle = graph(**deps).find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1]
    for up, down in itertools.pairwise(cycle):
        assert up in deps[down]
