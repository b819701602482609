"""References to user callables that cross a process boundary: a function travels as the
module and name it lives under (``CallableRef``) and is resolved again where the try runs,
importing its module or, for a DAG file, running the text it carries (the text of the DAG
version the try is of; the file as it is now when none came with it).
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_core.dag.bag import MODULE_PREFIX, run_dag_module


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


#: DAG file modules loaded here, by name and the text they ran.
_LOADED: dict[tuple[str, str], types.ModuleType] = {}


def _module(ref: CallableRef) -> types.ModuleType:
    if not ref.module.startswith(MODULE_PREFIX):
        try:
            return importlib.import_module(ref.module)
        except ImportError as exc:
            raise UnresolvableCallable(f"cannot import module '{ref.module}': {exc}") from None
    if ref.fileloc is None:
        raise UnresolvableCallable(f"'{ref.spec}' comes from a DAG file of unknown location")
    source = ref.source  # the DAG version's own text, whatever the file holds now
    if source is None:
        try:
            source = importlib.util.decode_source(Path(ref.fileloc).read_bytes())
        except (OSError, UnicodeDecodeError, SyntaxError) as exc:
            raise UnresolvableCallable(f"cannot read DAG file {ref.fileloc}: {exc}") from None
    module = _LOADED.get((ref.module, source))
    if module is None:
        try:
            module = run_dag_module(ref.module, ref.fileloc, source)
        except Exception as exc:  # a DAG file is user code
            raise UnresolvableCallable(
                f"loading DAG file {ref.fileloc} failed: {type(exc).__name__}: {exc}"
            ) from None
        _LOADED[(ref.module, source)] = module
    return module
