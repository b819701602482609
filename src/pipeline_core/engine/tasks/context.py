"""What a running task sees: its identity, run, XCom and a log, plus template rendering."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline_core.credentials.connections import Connection, ConnectionError_
from pipeline_core.credentials.lookup import CredentialMissing
from pipeline_core.dag.model import DAG, Task
from pipeline_core.dag.templates import (
    Reference,
    TemplateError,
    connection_field,
    iter_strings,
    render,
)
from pipeline_core.engine.tasks.logs import LogSink, TaskLog
from pipeline_core.errors import InvalidRequest
from pipeline_core.metrics import Metrics, NullMetrics
from pipeline_core.model import DagRun, TaskKey, iso
from pipeline_core.store.base import Store
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.types import XComEntry

DEFAULT_XCOM_MAX_BYTES = 1024 * 1024


class TaskFailed(Exception):
    """A task failed for a reason worth showing as is (no traceback needed)."""


class CredentialReader(Protocol):
    """Variables and connections as a try sees them (environment overrides first); both
    raise ``CredentialMissing`` naming what is not set."""

    def variable(self, key: str) -> Any: ...

    def connection(self, conn_id: str) -> Connection: ...


class _NoCredentials:
    def variable(self, key: str) -> Any:
        raise CredentialMissing(f"variable '{key}' cannot be read here")

    def connection(self, conn_id: str) -> Connection:
        raise CredentialMissing(f"connection '{conn_id}' cannot be read here")


_MISSING: Any = object()


class TryData(LogSink, Protocol):
    """The part of the store a try reads and writes: its log, XCom in and out."""

    def set_xcom(self, key: TaskKey, xcom_key: str, value: Any) -> object: ...

    def get_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry | None: ...

    def get_mapped_xcom(self, key: TaskKey, xcom_key: str) -> XComEntry: ...


@dataclass
class TaskContext:
    """Passed to python callables that accept ``context`` (or ``**kwargs``)."""

    dag: DAG
    task: Task
    run: DagRun
    try_number: int
    #: The XCom values and logs of tries, the part of the store a task sees.
    task_data: TryData
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
    #: Where ``var`` and ``conn`` (and ``{{ var.* }}``, ``{{ conn.* }}``) look.
    credentials: CredentialReader = field(default_factory=_NoCredentials)

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

    def var(self, key: str, default: Any = _MISSING) -> Any:
        """The value of variable ``key`` (its environment override first); ``default`` when
        it is not set, or without one ``TaskFailed`` naming it."""
        try:
            return self.credentials.variable(key)
        except CredentialMissing as exc:
            if default is not _MISSING:
                return default
            raise TaskFailed(exc.message) from None

    def conn(self, conn_id: str) -> Connection:
        """Connection ``conn_id``; ``TaskFailed`` naming it when it is not set."""
        try:
            return self.credentials.connection(conn_id)
        except (CredentialMissing, ConnectionError_) as exc:
            raise TaskFailed(str(exc)) from None

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
        if root == "var":
            return self._variable(reference)
        if root == "conn":
            return self._connection(reference)
        task_id, path = reference.xcom_task(self.dag.task_dict)
        entry = self._xcom(task_id, path[0])
        if entry is None:
            raise TemplateError(
                f"template '{{{{ {reference.text} }}}}' has no value: "
                f"task '{task_id}' pushed no XCom '{path[0]}'"
            )
        return _walk(entry.value, path[1:], reference, f"xcom.{task_id}.{path[0]}")

    def _variable(self, reference: Reference) -> Any:
        """The shortest key that exists wins (``var.a.b``: variable ``a``, path ``b``, else
        variable ``a.b``)."""
        parts = reference.parts
        first: CredentialMissing | None = None
        for cut in range(2, len(parts) + 1):
            key = ".".join(parts[1:cut])
            try:
                value = self.credentials.variable(key)
            except CredentialMissing as exc:
                first = first or exc
                continue
            return _walk(value, parts[cut:], reference, f"var.{key}")
        raise TemplateError(f"template '{{{{ {reference.text} }}}}': {first}")

    def _connection(self, reference: Reference) -> Any:
        path = connection_field(reference.parts)
        conn_id = ".".join(reference.parts[1 : len(reference.parts) - len(path)])
        try:
            return self.credentials.connection(conn_id).value(path)
        except (CredentialMissing, ConnectionError_) as exc:
            raise TemplateError(f"template '{{{{ {reference.text} }}}}': {exc}") from None
        except KeyError as exc:
            raise TemplateError(f"template '{{{{ {reference.text} }}}}': {exc.args[0]}") from None

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
