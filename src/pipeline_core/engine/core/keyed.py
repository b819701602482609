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
