"""The concurrency keys of the runs the core holds. Pure: part of the engine's core.

Each held run's key is worked out once; the held runs of each (DAG, key) are kept oldest
first, and the started ones counted, as runs are held, start and are forgotten — so a
trigger or a run's end never scans every held run. Key templates of tries that name only
their run's values are rendered once per run."""

from __future__ import annotations

import contextlib
from collections import Counter

from pipeline_core.dag.flow import KeyError_
from pipeline_core.dag.model import DAG
from pipeline_core.model import DagRun

RunKey = tuple[str, str]
Slot = tuple[str, str]  # (dag_id, key)


class KeyedRuns:
    def __init__(self) -> None:
        #: Each held run's key (``None``: its DAG has none, or it cannot be rendered — a
        #: run stored before its DAG had one: no limit holds it back).
        self.of: dict[RunKey, str | None] = {}
        self.held: dict[Slot, dict[RunKey, None]] = {}
        self.started: Counter[Slot] = Counter()
        self.rendered: dict[RunKey, dict[str, str]] = {}
        #: Where each waiting run stands: (minus its priority, its key's turn). Turns are
        #: start-time fair queuing across a DAG's keys, as in the pools' queues.
        self.rank: dict[RunKey, tuple[int, int]] = {}
        self._rounds: dict[Slot, int] = {}
        self._serving: dict[str, int] = {}
        #: Waiting runs whose wait for their key was told (a ``flow.waiting`` event).
        self.told: set[RunKey] = set()

    def rank_of(self, run: DagRun, dag: DAG | None) -> tuple[int, int]:
        """A new waiting run's place: higher priority first, then its key's next turn
        (never before the turn being served), then — on ties — the order runs came in."""
        slot = (run.dag_id, self.key(run, dag) or "")
        turn = max(self._rounds.get(slot, 0), self._serving.get(run.dag_id, 0))
        self._rounds[slot] = turn + 1
        rank = self.rank[run.key] = (-run.priority, turn)
        return rank

    def served(self, run_key: RunKey) -> None:
        """A waiting run started: its turn is the one being served."""
        rank = self.rank.pop(run_key, None)
        if rank is not None:
            self._serving[run_key[0]] = rank[1]

    def key(self, run: DagRun, dag: DAG | None) -> str | None:
        if run.key not in self.of:
            key = None
            if dag is not None and dag.run_concurrency is not None:
                with contextlib.suppress(KeyError_):
                    key = dag.run_concurrency.render(run)
            self.of[run.key] = key
            if key is not None:
                self.held.setdefault((run.dag_id, key), {})[run.key] = None
        return self.of[run.key]

    def start(self, run: DagRun, dag: DAG | None) -> None:
        key = self.key(run, dag)
        if key is not None:
            self.started[(run.dag_id, key)] += 1

    def forget(self, run_key: RunKey, *, started: bool) -> None:
        self.rendered.pop(run_key, None)
        self.told.discard(run_key)
        self.rank.pop(run_key, None)
        key = self.of.pop(run_key, None)
        if key is None:
            return
        slot = (run_key[0], key)
        held = self.held.get(slot, {})
        held.pop(run_key, None)
        if not held:
            self.held.pop(slot, None)
        if started:
            self.started[slot] -= 1
            if self.started[slot] <= 0:
                del self.started[slot]
