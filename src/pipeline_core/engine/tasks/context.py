"""What a running task sees: its identity, run, XCom and a log, plus template rendering."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.dag.model import DAG, Task
from pipeline_core.dag.templates import Reference, TemplateError, iter_strings, render
from pipeline_core.engine.tasks.logs import TaskLog
from pipeline_core.errors import InvalidRequest
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import DagRun, TaskKey, iso
from pipeline_core.store.parts import TaskDataStore
from pipeline_core.store.sql.common import to_json

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
        return TaskKey(self.dag.dag_id, self.run.run_id, self.task.task_id)

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
        """The value another task of this run pushed, or ``default``."""
        entry = self.task_data.get_xcom(TaskKey(self.dag_id, self.run_id, task_id), key)
        return default if entry is None else entry.value

    def resolve(self, reference: Reference) -> Any:
        """The value of one template reference; ``TemplateError`` naming it when missing."""
        root = reference.root
        scalars = {
            "run_id": self.run_id,
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "try_number": self.try_number,
            "ds": self.ds,
            "logical_date": self.logical_date,
            "ts": self.logical_date,
        }
        if root in scalars:
            return scalars[root]
        if root == "dag_run":
            return _walk(self.conf, reference.parts[2:], reference, "dag_run.conf")
        task_id, path = reference.xcom_task(self.dag.task_dict)
        entry = self.task_data.get_xcom(TaskKey(self.dag_id, self.run_id, task_id), path[0])
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
