"""What crosses the boundary between the engine and its worker processes.

DAGs and runs travel pickled, with two substitutions: a function becomes a ``CallableRef``
(module, qualified name and the file of its module) that the worker resolves when the task
runs, so functions defined in a DAG file work although that file is not an importable module;
and the model's read-only mappings travel as plain dicts that are frozen again on arrival.
Messages are tuples whose first item names them; ``multiprocessing.connection`` frames them.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import pickle
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.bag import MODULE_PREFIX

#: DAG versions a worker keeps; it forgets the oldest first, and the engine mirrors that.
KEEP_DAGS = 64
#: The largest message on the zygote's control socket (small JSON objects).
CONTROL_MESSAGE_BYTES = 64 * 1024

# Messages from the engine to a worker.
DAG = "dag"  # (DAG, token, pickled DAG, sys.path): a definition later jobs refer to by token
RUN = "run"  # WireJob.to_message()
# Messages from a worker to the engine.
READY = "ready"  # (READY, pid)
LOG = "log"  # (LOG, text): timestamped log lines of the current try
SET_XCOM = "set_xcom"  # (SET_XCOM, key, value)
GET_XCOM = "get_xcom"  # (GET_XCOM, task_id, key) -> the engine answers (value,) or (None,)
METRIC = "metric"  # (METRIC, "counter" | "gauge" | "histogram", name, value, labels)
DONE = "done"  # (DONE, outcome, error, follow, poke_ok)


@dataclass(frozen=True, slots=True)
class WireJob:
    """One try as a worker receives it. The DAG comes separately, once per worker and DAG
    version; the run comes pickled once per run version (a frozen dataclass pickles slowly,
    bytes do not)."""

    dag_token: int
    task_id: str
    run_bytes: bytes
    try_number: int
    xcom_max_bytes: int

    def to_message(self) -> tuple[Any, ...]:
        return (RUN, self.dag_token, self.task_id, self.run_bytes, self.try_number,
                self.xcom_max_bytes)  # fmt: skip

    @classmethod
    def from_message(cls, message: tuple[Any, ...]) -> WireJob:
        return cls(*message[1:])


@dataclass(frozen=True, slots=True)
class CallableRef:
    """A function named by where it lives. ``fileloc`` is the file of its module, used for
    DAG files, which are loaded by path rather than imported by name."""

    module: str
    qualname: str
    fileloc: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.module}:{self.qualname}"


def dumps(message: tuple[Any, ...]) -> bytes:
    """A message of plain values (runs, XCom, log text): the C pickler's fast path."""
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def dumps_definition(value: Any) -> bytes:
    """Pickle a DAG: functions as ``CallableRef``, mapping proxies as dicts (slower than
    ``dumps``; done once per DAG version)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    return pickle.loads(data)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType) and obj is not _frozen:
            module = sys.modules.get(obj.__module__)
            fileloc = getattr(module, "__file__", None)
            return CallableRef, (obj.__module__, obj.__qualname__, fileloc)
        if isinstance(obj, types.MappingProxyType):
            return _frozen, (dict(obj),)
        return NotImplemented


def _frozen(mapping: dict[str, Any]) -> types.MappingProxyType[str, Any]:
    return types.MappingProxyType(mapping)


class UnresolvableCallable(Exception):
    """The function a ``CallableRef`` names cannot be found in this process."""


def resolve(ref: CallableRef) -> Callable[..., Any]:
    """The function ``ref`` names, importing (or, for a DAG file, loading) its module."""
    if "<locals>" in ref.qualname or "<lambda>" in ref.qualname:
        raise UnresolvableCallable(
            f"'{ref.spec}' is a lambda or a nested function, which a worker process cannot "
            "import: define it at module level, or set executor: thread"
        )
    module = _module(ref)
    target: Any = module
    for part in ref.qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise UnresolvableCallable(f"module '{ref.module}' has no '{ref.qualname}'")
    # ``@task`` leaves a task factory under the function's name; the body is kept beside it.
    target = getattr(target, "__pipeline_core_body__", target)
    if not callable(target):
        raise UnresolvableCallable(f"'{ref.spec}' is not callable")
    return target  # type: ignore[no-any-return]


_LOADED: dict[str, tuple[int, types.ModuleType]] = {}


def _module(ref: CallableRef) -> types.ModuleType:
    if not ref.module.startswith(MODULE_PREFIX):
        try:
            return importlib.import_module(ref.module)
        except ImportError as exc:
            raise UnresolvableCallable(f"cannot import module '{ref.module}': {exc}") from None
    if ref.fileloc is None:
        raise UnresolvableCallable(f"'{ref.spec}' comes from a DAG file of unknown location")
    try:
        mtime = os.stat(ref.fileloc).st_mtime_ns
    except OSError as exc:
        raise UnresolvableCallable(f"cannot read DAG file {ref.fileloc}: {exc}") from None
    cached = _LOADED.get(ref.module)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    module = _load_dag_file(ref.module, ref.fileloc)
    _LOADED[ref.module] = (mtime, module)
    return module


def _load_dag_file(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UnresolvableCallable(f"cannot load DAG file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a DAG file is user code
        sys.modules.pop(name, None)
        raise UnresolvableCallable(
            f"loading DAG file {path} failed: {type(exc).__name__}: {exc}"
        ) from None
    return module
