"""The Python authoring API. It builds the same document as the YAML format and hands it to
``dag_from_spec``, so both styles produce identical, identically validated ``DAG`` values.

    with DAG("etl", schedule="@daily", start_date="2026-01-01") as dag:
        @task(retries=2)
        def extract() -> dict: return {"rows": 3}

        @task
        def load(data: dict) -> None: ...

        load(extract())   # passing an output wires the dependency and the XCom

        @task
        def double(x: int, factor: int) -> int: return x * factor

        double.partial(factor=2).expand(x=extract()["ids"])   # one instance per element
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, overload

from pipeline_core.dag import model
from pipeline_core.dag.spec import dag_from_spec
from pipeline_core.errors import DagValidationError, Issue

_context = threading.local()


class DAG:
    """A DAG under construction. Inside ``with DAG(...)``, task constructors add to it; on
    exit it is validated (``DagValidationError`` lists every problem) and ``build()`` returns
    the immutable ``pipeline_core.dag.model.DAG``."""

    def __init__(self, dag_id: str, **fields: Any) -> None:
        self.dag_id = dag_id
        self.fields = fields
        self.tasks: dict[str, dict[str, Any]] = {}
        self.fileloc: str | None = _caller_file()
        self._built: model.DAG | None = None

    def __enter__(self) -> DAG:
        _stack().append(self)
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        _stack().pop()
        if exc_type is None:
            self.build()

    def add(self, task_id: str, body: dict[str, Any]) -> TaskRef:
        """Add a task given its document (the YAML task mapping); returns a reference to it.
        Task outputs among its ``expand`` values become templates and dependencies."""
        if task_id in self.tasks:
            raise DagValidationError(
                [Issue(f"duplicate task id '{task_id}'", f"tasks.{task_id}", self.fileloc)]
            )
        upstream: list[XComArg] = []
        if isinstance(body.get("expand"), dict):
            body = {**body, "expand": _templated(body["expand"], upstream)}
        self.tasks[task_id] = body
        self._built = None
        ref = TaskRef(self, task_id)
        if upstream:
            ref.set_upstream(upstream)
        return ref

    def to_spec(self) -> dict[str, Any]:
        """The equivalent YAML document as plain data."""
        return {"dag_id": self.dag_id, **self.fields, "tasks": self.tasks}

    def build(self) -> model.DAG:
        """The validated immutable DAG (cached until the builder changes)."""
        if self._built is None:
            self._built = dag_from_spec(self.to_spec(), fileloc=self.fileloc)
        return self._built


def _stack() -> list[DAG]:
    if not hasattr(_context, "stack"):
        _context.stack = []
    stack: list[DAG] = _context.stack
    return stack


def current_dag() -> DAG:
    """The DAG of the innermost ``with DAG(...)`` block."""
    stack = _stack()
    if not stack:
        raise RuntimeError("tasks must be created inside a 'with DAG(...)' block")
    return stack[-1]


def _caller_file() -> str | None:
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__", "").startswith("pipeline_core.dag"):
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else None


class TaskRef:
    """A task in a DAG being built; ``a >> b`` makes ``b`` depend on ``a``."""

    def __init__(self, dag: DAG, task_id: str) -> None:
        self.dag, self.task_id = dag, task_id

    def output(self, key: str = "return_value") -> XComArg:
        return XComArg(self, key)

    def set_upstream(self, others: TaskRef | Iterable[TaskRef]) -> None:
        deps = self.dag.tasks[self.task_id].setdefault("depends_on", [])
        for other in [others] if isinstance(others, TaskRef) else others:
            if other.task_id not in deps:
                deps.append(other.task_id)
        self.dag._built = None

    def __rshift__(self, other: TaskRef | Sequence[TaskRef]) -> TaskRef | Sequence[TaskRef]:
        for target in [other] if isinstance(other, TaskRef) else other:
            target.set_upstream(self)
        return other

    def __lshift__(self, other: TaskRef | Sequence[TaskRef]) -> TaskRef | Sequence[TaskRef]:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Sequence[TaskRef]) -> TaskRef:
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Sequence[TaskRef]) -> TaskRef:
        for target in other:
            target.set_upstream(self)
        return self

    def __repr__(self) -> str:
        return f"TaskRef({self.dag.dag_id}.{self.task_id})"


class XComArg(TaskRef):
    """The output of a ``@task`` call: passing it to another task wires the edge and the XCom."""

    def __init__(self, ref: TaskRef, key: str = "return_value") -> None:
        super().__init__(ref.dag, ref.task_id)
        self.key = key

    def __getitem__(self, key: str) -> XComArg:
        return XComArg(self, f"{self.key}.{key}")

    @property
    def template(self) -> str:
        return f"{{{{ xcom.{self.task_id}.{self.key} }}}}"


def _templated(values: dict[str, Any], upstream: list[XComArg]) -> dict[str, Any]:
    """``values`` with task outputs as XCom templates (added to ``upstream``); a range or
    tuple becomes a list."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, XComArg):
            upstream.append(value)
            out[name] = value.template
        else:
            out[name] = list(value) if isinstance(value, range | tuple) else value
    return out


def _task_body(kind: str, options: dict[str, Any], **config: Any) -> dict[str, Any]:
    return {"type": kind, **{k: v for k, v in config.items() if v is not None}, **options}


def noop_task(task_id: str, **options: Any) -> TaskRef:
    """A task that does nothing (a join point or placeholder)."""
    return current_dag().add(task_id, _task_body("noop", options))


def shell_task(
    task_id: str,
    command: str,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    **options: Any,
) -> TaskRef:
    """Run ``command`` in a shell; templates such as ``{{ ds }}`` are rendered first."""
    return current_dag().add(
        task_id, _task_body("shell", options, command=command, env=env, cwd=cwd)
    )


def python_task(
    task_id: str,
    callable: Callable[..., Any] | str,
    *,
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> TaskRef:
    """Call a function (an object or ``'module:function'``) with ``kwargs``."""
    return current_dag().add(
        task_id, _task_body("python", options, callable=callable, kwargs=kwargs)
    )


def branch_task(
    task_id: str,
    *,
    branches: list[dict[str, Any]] | None = None,
    default: list[str] | None = None,
    callable: Callable[..., Any] | str | None = None,
    **options: Any,
) -> TaskRef:
    """Follow the first branch whose ``when`` holds (else ``default``), or ask ``callable``."""
    body = _task_body("branch", options, branches=branches, default=default, callable=callable)
    return current_dag().add(task_id, body)


def sensor_task(
    task_id: str,
    *,
    poke: Callable[..., Any] | str | None = None,
    file: str | None = None,
    until: str | None = None,
    poke_interval: float | str | None = None,
    **options: Any,
) -> TaskRef:
    """Wait until ``poke`` returns true, ``file`` exists or the time ``until`` has come."""
    body = _task_body(
        "sensor", options, poke=poke, file=file, until=until, poke_interval=poke_interval
    )
    return current_dag().add(task_id, body)


@overload
def task(function: Callable[..., Any], /) -> Callable[..., XComArg]: ...
@overload
def task(
    *, task_id: str | None = None, **options: Any
) -> Callable[[Callable[..., Any]], Callable[..., XComArg]]: ...
def task(
    function: Callable[..., Any] | None = None, /, *, task_id: str | None = None, **options: Any
) -> Any:
    """Turn a function into a python task factory: each call inside a DAG adds a task.

    Arguments that are outputs of other tasks become XCom templates and dependencies; other
    arguments must be JSON values and are stored as ``kwargs``.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., XComArg]:
        signature = inspect.signature(fn)

        def add(arguments: dict[str, Any], mapping: dict[str, Any]) -> XComArg:
            dag = current_dag()
            upstream: list[XComArg] = []
            call_kwargs = _templated(arguments, upstream)
            tid = _unique_id(dag, task_id or fn.__name__)
            ref = python_task(tid, fn, kwargs=call_kwargs or None, **mapping, **options)
            if upstream:
                ref.set_upstream(upstream)
            return XComArg(ref)

        @functools.wraps(fn)
        def add_task(*args: Any, **kwargs: Any) -> XComArg:
            return add(dict(signature.bind(*args, **kwargs).arguments), {})

        add_task.__pipeline_core_body__ = fn  # type: ignore[attr-defined]  # for workers
        add_task.partial = lambda **fixed: Partial(add, signature, fixed)  # type: ignore[attr-defined]
        add_task.expand = Partial(add, signature, {}).expand  # type: ignore[attr-defined]
        add_task.expand_kwargs = Partial(add, signature, {}).expand_kwargs  # type: ignore[attr-defined]
        return add_task

    return decorate(function) if function is not None else decorate


def _unique_id(dag: DAG, base: str) -> str:
    if base not in dag.tasks:
        return base
    n = 1
    while f"{base}__{n}" in dag.tasks:
        n += 1
    return f"{base}__{n}"


class Partial:
    """``fn.partial(**fixed)``: the arguments every instance of a mapped task shares, waiting
    for ``.expand(**lists)`` or ``.expand_kwargs(list_of_mappings)`` to add the task."""

    def __init__(
        self,
        add: Callable[[dict[str, Any], dict[str, Any]], XComArg],
        signature: inspect.Signature,
        fixed: dict[str, Any],
    ) -> None:
        signature.bind_partial(**fixed)  # a name the function does not take: TypeError now
        self._add, self._signature, self._fixed = add, signature, fixed

    def expand(self, **lists: Any) -> XComArg:
        """One instance per element (the cross product of several lists); each value is a
        list, a task's output, or a template of the run's conf."""
        if not lists:
            raise TypeError("expand() needs at least one argument to map over")
        clash = sorted(set(lists) & set(self._fixed))
        if clash:
            raise TypeError(f"{', '.join(clash)} given both to partial() and to expand()")
        self._signature.bind_partial(**self._fixed, **lists)
        return self._add(dict(self._fixed), {"expand": lists})

    def expand_kwargs(self, values: Any) -> XComArg:
        """One instance per mapping of ``values`` (a list, or a task's output), whose items
        are that instance's arguments."""
        return self._add(dict(self._fixed), {"expand": {"kwargs": values}, "expand_mode": "kwargs"})
