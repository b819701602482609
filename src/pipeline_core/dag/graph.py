"""Graph algorithms over a DAG's dependency edges. Every function is linear in tasks + edges.

Edges point from upstream to downstream: ``depends_on: [a]`` on ``b`` is the edge a → b.
Dangling references (a ``depends_on`` naming no task) are ignored here; validation reports them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipeline_core.dag.model import DAG


@dataclass(frozen=True, slots=True)
class Graph:
    """Adjacency in both directions, node order = declaration order."""

    nodes: tuple[str, ...]
    upstream: Mapping[str, tuple[str, ...]]
    downstream: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_edges(cls, dependencies: Iterable[tuple[str, Sequence[str]]]) -> Graph:
        """Build from ``(node, its upstream ids)`` pairs; unknown upstream ids are dropped."""
        pairs = list(dependencies)
        nodes = tuple(node for node, _ in pairs)
        known = set(nodes)
        upstream: dict[str, tuple[str, ...]] = {}
        downstream: dict[str, list[str]] = {node: [] for node in nodes}
        for node, ups in pairs:
            kept = tuple(dict.fromkeys(u for u in ups if u in known))
            upstream[node] = kept
            for up in kept:
                downstream[up].append(node)
        return cls(nodes, upstream, {n: tuple(d) for n, d in downstream.items()})

    @classmethod
    def of(cls, dag: DAG) -> Graph:
        return cls.from_edges((task.task_id, task.depends_on) for task in dag.tasks)

    def roots(self) -> list[str]:
        """Tasks with no upstream, in declaration order."""
        return [n for n in self.nodes if not self.upstream[n]]

    def leaves(self) -> list[str]:
        """Tasks with no downstream, in declaration order."""
        return [n for n in self.nodes if not self.downstream[n]]

    def topological_order(self) -> list[str]:
        """Kahn's algorithm; ties resolved by declaration order, so the result is deterministic.

        Raises ``CycleError`` (carrying one cycle's path) when the graph is not acyclic.
        """
        remaining = {n: len(self.upstream[n]) for n in self.nodes}
        ready = deque(n for n in self.nodes if remaining[n] == 0)
        order: list[str] = []
        while ready:
            node = ready.popleft()
            order.append(node)
            for child in self.downstream[node]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    ready.append(child)
        if len(order) != len(self.nodes):
            cycle = self.find_cycle()
            assert cycle is not None
            raise CycleError(cycle)
        return order

    def find_cycle(self) -> list[str] | None:
        """One cycle as a path that ends where it starts (``[a, b, c, a]``), or ``None``."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.nodes, white)
        for start in self.nodes:
            if color[start] != white:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            path: list[str] = [start]
            color[start] = grey
            while stack:
                node, index = stack[-1]
                children = self.downstream[node]
                if index == len(children):
                    stack.pop()
                    path.pop()
                    color[node] = black
                    continue
                stack[-1] = (node, index + 1)
                child = children[index]
                if color[child] == grey:
                    return [*path[path.index(child) :], child]
                if color[child] == white:
                    color[child] = grey
                    stack.append((child, 0))
                    path.append(child)
        return None

    def ancestors(self, node: str) -> set[str]:
        """Every task ``node`` transitively depends on."""
        return _reach([node], self.upstream)

    def descendants(self, *nodes: str) -> set[str]:
        """Every task that transitively depends on any of ``nodes``."""
        return _reach(nodes, self.downstream)


def _reach(starts: Iterable[str], edges: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    frontier = [n for start in starts for n in edges[start]]
    while frontier:
        current = frontier.pop()
        if current not in seen:
            seen.add(current)
            frontier.extend(edges[current])
    return seen


class CycleError(ValueError):
    """The graph has a cycle; ``path`` is one of them, first node repeated at the end."""

    def __init__(self, path: list[str]) -> None:
        super().__init__("cycle: " + " -> ".join(path))
        self.path = path


def topological_order(dag: DAG) -> list[str]:
    """Task ids of ``dag`` in a deterministic dependency order."""
    return Graph.of(dag).topological_order()
