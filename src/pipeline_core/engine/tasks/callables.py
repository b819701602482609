"""References to user callables that cross a process boundary: a function travels as the
module and name it lives under (``CallableRef``) and is resolved again where the try runs,
importing its module or, for a DAG file, loading it by path (reloaded when the file changes).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.bag import MODULE_PREFIX


@dataclass(frozen=True, slots=True)
class CallableRef:
    """A function named by where it lives. ``fileloc`` is the file of its module, used for
    DAG files, which are loaded by path rather than imported by name; ``source`` is the text
    that file had in the DAG version the try is of (run instead of the file as it is now)."""

    module: str
    qualname: str
    fileloc: str | None = None
    source: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.module}:{self.qualname}"


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
#: DAG file modules loaded from a version's text, by name and text.
_FROM_SOURCE: dict[tuple[str, str], types.ModuleType] = {}


def _module(ref: CallableRef) -> types.ModuleType:
    if not ref.module.startswith(MODULE_PREFIX):
        try:
            return importlib.import_module(ref.module)
        except ImportError as exc:
            raise UnresolvableCallable(f"cannot import module '{ref.module}': {exc}") from None
    if ref.fileloc is None:
        raise UnresolvableCallable(f"'{ref.spec}' comes from a DAG file of unknown location")
    if ref.source is not None:  # the DAG version's own text, whatever the file holds now
        module = _FROM_SOURCE.get((ref.module, ref.source))
        if module is None:
            module = _load_dag_file(ref.module, ref.fileloc, ref.source)
            _FROM_SOURCE[(ref.module, ref.source)] = module
        return module
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


def _load_dag_file(name: str, path: str, source: str | None = None) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UnresolvableCallable(f"cannot load DAG file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if source is None:
            spec.loader.exec_module(module)
        else:
            exec(compile(source, path, "exec"), vars(module))  # trusted code, as documented
    except Exception as exc:  # a DAG file is user code
        sys.modules.pop(name, None)
        raise UnresolvableCallable(
            f"loading DAG file {path} failed: {type(exc).__name__}: {exc}"
        ) from None
    return module
