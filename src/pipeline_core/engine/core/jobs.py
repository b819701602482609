"""What the orchestrator hands an executor (a ``Job``: one try) and gets back (a
``Completion``), and the ``Executor`` protocol between them.

The protocol is submit-a-job / get-a-completion-back, so a distributed executor fits it as
well as the local one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline_core.dag.model import DAG, Task
from pipeline_core.model import DagRun, TaskKey


@dataclass(frozen=True, slots=True)
class Result:
    """What a handler reports. ``follow``: the branch's chosen tasks. ``poke_ok``: whether a
    sensor's condition held (``False`` asks to be poked again later)."""

    follow: tuple[str, ...] | None = None
    poke_ok: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    """One try of one task instance."""

    key: TaskKey
    try_number: int
    dag: DAG
    task: Task
    run: DagRun
    timeout: float | None = None
    #: The largest XCom value this try may write (``None``: the executor's own limit); set
    #: where the limit comes from elsewhere (a remote worker runs with the engine's).
    xcom_max_bytes: int | None = None
    #: A mapped task's instance: its values of the ``expand`` keys (filled in by the
    #: engine's shell, which reads them; ``None`` when they could not be read).
    map_values: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Completion:
    """How a try ended: ``success``, ``failed``, ``timeout`` or ``cancelled``."""

    key: TaskKey
    try_number: int
    outcome: str
    error: str | None = None
    result: Result = field(default_factory=Result)


OnComplete = Callable[[Completion], None]


class Executor(Protocol):
    def start(self, on_complete: OnComplete) -> None:
        """Begin accepting jobs; completions are reported through ``on_complete``.
        Raises ``ConfigurationError`` when it cannot run anything (nothing is started then)."""
        ...

    def submit(self, job: Job) -> None: ...

    def cancel(self, key: TaskKey, try_number: int) -> None:
        """Stop a running try (its completion reports ``cancelled``)."""
        ...

    def running_elsewhere(self, tries: Collection[tuple[TaskKey, int]]) -> set[tuple[TaskKey, int]]:
        """Of ``tries``, which the store shows running but no engine holds (an engine that
        died left them), those still running out of this process's reach that will report
        when they end: a new engine keeps them instead of counting them orphaned."""
        ...

    def shutdown(self, wait: bool = True) -> None: ...
