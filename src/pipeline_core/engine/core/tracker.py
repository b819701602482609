"""In-memory readiness of one run: which waiting tasks may run, skip or fail. Pure, no I/O.

Each waiting task keeps running tallies of how its upstream tasks finished, so recording a
finished task costs O(its downstream) and a whole run costs O(tasks + edges).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipeline_core.dag.graph import Graph
from pipeline_core.dag.model import DAG
from pipeline_core.state import (
    FINISHED_TASK_STATES,
    Readiness,
    TaskState,
    evaluate_counts,
    outcome_of,
)


@dataclass
class _Tally:
    total: int = 0
    success: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class RunTracker:
    """Readiness bookkeeping for one run of ``dag``.

    ``waiting`` holds queued tasks whose trigger rule has not decided yet. ``decide`` returns
    ``(task_id, READY|SKIP|UPSTREAM_FAILED)`` for every waiting task whose rule now decides;
    the caller acts on it and reports the resulting states back with ``finished``.
    """

    dag: DAG
    graph: Graph
    states: dict[str, TaskState]
    waiting: set[str] = field(default_factory=set)
    tallies: dict[str, _Tally] = field(default_factory=dict)
    #: How many tasks have not finished (kept up to date: asked after every move).
    unfinished: int = 0

    @classmethod
    def build(cls, dag: DAG, states: Mapping[str, TaskState]) -> RunTracker:
        """A tracker for a run whose task instances are in ``states`` (missing → removed)."""
        graph = Graph.of(dag)
        current = {t: states.get(t, TaskState.REMOVED) for t in graph.nodes}
        tracker = cls(dag, graph, current)
        tracker.unfinished = sum(1 for s in current.values() if s not in FINISHED_TASK_STATES)
        for task_id in graph.nodes:
            tally = tracker.tallies[task_id] = _Tally()
            for up in graph.upstream[task_id]:
                if current[up] is not TaskState.REMOVED:
                    tally.total += 1
                    _count(tally, current[up], +1)
            if current[task_id] is TaskState.QUEUED:
                tracker.waiting.add(task_id)
        return tracker

    def decide(self, task_ids: Iterable[str] | None = None) -> list[tuple[str, Readiness]]:
        """Decisions for the given waiting tasks (all waiting tasks when ``None``)."""
        candidates = self.graph.nodes if task_ids is None else task_ids
        decisions: list[tuple[str, Readiness]] = []
        for task_id in candidates:
            if task_id not in self.waiting:
                continue
            tally = self.tallies[task_id]
            rule = self.dag.task_dict[task_id].trigger_rule
            readiness = evaluate_counts(
                rule, tally.total, tally.success, tally.skipped, tally.failed
            )
            if readiness is not Readiness.WAIT:
                self.waiting.discard(task_id)
                decisions.append((task_id, readiness))
        return decisions

    def set_state(self, task_id: str, state: TaskState) -> list[tuple[str, Readiness]]:
        """Record a new state; returns the decisions it causes downstream."""
        previous = self.states[task_id]
        self.states[task_id] = state
        self.unfinished += (previous in FINISHED_TASK_STATES) - (state in FINISHED_TASK_STATES)
        if state is TaskState.QUEUED:
            self.waiting.add(task_id)
        else:
            self.waiting.discard(task_id)
        before, after = outcome_of(previous), outcome_of(state)
        removed = state is TaskState.REMOVED and previous is not TaskState.REMOVED
        if before == after and not removed:
            return []
        downstream = self.graph.downstream[task_id]
        for child in downstream:
            tally = self.tallies[child]
            _count(tally, previous, -1)
            if removed:
                tally.total -= 1  # a removed upstream no longer counts at all
            else:
                _count(tally, state, +1)
        return self.decide(downstream)

    def direct_downstream(self, task_id: str) -> tuple[str, ...]:
        return self.graph.downstream[task_id]

    def leaves(self) -> list[str]:
        return self.graph.leaves()


def _count(tally: _Tally, state: TaskState, delta: int) -> None:
    outcome = outcome_of(state)
    if outcome == "success":
        tally.success += delta
    elif outcome == "skipped":
        tally.skipped += delta
    elif outcome == "failed":
        tally.failed += delta
