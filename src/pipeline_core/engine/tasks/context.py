"""What a running task sees: its identity, run, XCom and a log, plus template rendering."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.dag.model import DAG, Task
from pipeline_core.dag.templates import Reference, TemplateError, iter_strings, render
from pipeline_core.engine.tasks.logs import TaskLog
from pipeline_core.errors import InvalidRequest
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import DagRun, TaskKey, iso
from pipeline_core.store.base import Store
from pipeline_core.store.parts import TaskDataStore
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.types import XComEntry

DEFAULT_XCOM_MAX_BYTES = 1024 * 1024


class TaskFailed(Exception):
    """A task failed for a reason worth showing as is (no traceback needed)."""


@dataclass
class TaskContext:
    """Passed to python callables that accept ``context`` (or ``**kwargs``)."""

    dag: DAG
    task: Task
    run: DagRun
    try_number: int
    #: The XCom values and logs of tries, the part of the store a task sees.
    task_data: TaskDataStore
    log: TaskLog
    xcom_max_bytes: int = DEFAULT_XCOM_MAX_BYTES
    metrics: Metrics = field(default_factory=NullMetrics)
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Where a handler parks the subprocess it starts, so the executor can kill it.
    process_holder: Any = None
    #: Whether subprocesses get a process group of their own (on a thread of the engine), or
    #: stay in the caller's (a worker, whose whole group the executor stops).
    children_in_own_group: bool = True
    #: Which instance of a mapped task this try runs (-1: the task is not mapped) ...
    map_index: int = -1
    #: ... and that instance's values of the ``expand`` keys (``{{ map.KEY }}``).
    map_values: Mapping[str, Any] | None = None
    #: The whole store, for what runs on the engine's own threads (``trigger_dag``).
    store: Store | None = None

    @property
    def dag_id(self) -> str:
        return self.dag.dag_id

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.dag.dag_id, self.run.run_id, self.task.task_id, self.map_index)

    @property
    def conf(self) -> dict[str, Any]:
        return dict(self.run.conf)

    @property
    def logical_date(self) -> str:
        return iso(self.run.logical_date) or ""

    @property
    def ds(self) -> str:
        return self.run.logical_date.strftime("%Y-%m-%d")

    def xcom_push(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` for downstream tasks; fails the task if too big."""
        try:
            size = len(to_json(value, f"XCom value '{key}'").encode("utf-8"))
        except InvalidRequest as exc:
            raise TaskFailed(exc.message) from None
        if size > self.xcom_max_bytes:
            raise TaskFailed(
                f"XCom '{key}' is {_size(size)}, over the {_size(self.xcom_max_bytes)} limit"
            )
        self.task_data.set_xcom(self.key, key, value)
        self.metrics.histogram("xcom.size_bytes", size, dag_id=self.dag_id, task_id=self.task_id)

    def xcom_pull(self, task_id: str, key: str = "return_value", default: Any = None) -> Any:
        """The value another task of this run pushed, or ``default``; of a mapped task, the
        values its instances pushed, as one list in map-index order."""
        entry = self._xcom(task_id, key)
        return default if entry is None else entry.value

    def _xcom(self, task_id: str, key: str) -> XComEntry | None:
        source = TaskKey(self.dag_id, self.run_id, task_id)
        task = self.dag.task_dict.get(task_id)
        if task is not None and task.expansion is not None:
            return self.task_data.get_mapped_xcom(source, key)
        return self.task_data.get_xcom(source, key)

    @property
    def values(self) -> Mapping[str, Any]:
        """This instance's values of the ``expand`` keys; ``TaskFailed`` when they could
        not be read, ``{}`` for a task that is not mapped."""
        if self.map_index < 0:
            return {}
        if self.map_values is None:
            raise TaskFailed(f"the values of map index {self.map_index} could not be read")
        return self.map_values

    def resolve(self, reference: Reference) -> Any:
        """The value of one template reference; ``TemplateError`` naming it when missing."""
        root = reference.root
        scalars = {
            "run_id": self.run_id,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
            "map_index": self.map_index,
            "ds": self.ds,
            "logical_date": self.logical_date,
            "ts": self.logical_date,
        }
        if root in ("map", "map_index") and self.map_index < 0:
            raise TemplateError(f"template '{{{{ {reference.text} }}}}' is only known when mapped")
        if root in scalars:
            return scalars[root]
        if root == "dag_run":
            return _walk(self.conf, reference.parts[2:], reference, "dag_run.conf")
        if root == "map":
            return _walk(dict(self.values), reference.parts[1:], reference, "map")
        task_id, path = reference.xcom_task(self.dag.task_dict)
        entry = self._xcom(task_id, path[0])
        if entry is None:
            raise TemplateError(
                f"template '{{{{ {reference.text} }}}}' has no value: "
                f"task '{task_id}' pushed no XCom '{path[0]}'"
            )
        return _walk(entry.value, path[1:], reference, f"xcom.{task_id}.{path[0]}")

    def render(self, value: Any) -> Any:
        """``value`` with every template rendered (recursively through dicts and lists)."""
        if isinstance(value, str):
            return render(value, self.resolve) if "{{" in value else value
        if isinstance(value, dict):
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.render(v) for v in value]
        return value

    def has_templates(self, value: Any) -> bool:
        return any("{{" in text for _, text in iter_strings(value))


def _walk(value: Any, path: tuple[str, ...], reference: Reference, where: str) -> Any:
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateError(
                f"template '{{{{ {reference.text} }}}}' has no value: {where} has no '{part}'"
            )
        where += f".{part}"
    return value


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"
