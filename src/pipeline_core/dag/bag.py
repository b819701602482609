"""Load every DAG of a folder. One broken file never hides the others.

YAML files (``*.yaml``, ``*.yml``) and Python files (``*.py``) are found recursively;
hidden folders and ``__pycache__`` are skipped. Python DAG files are trusted code: they are
executed. The folder is put on ``sys.path`` so ``callable: module:function`` can import
modules that live beside the DAG files.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import importlib.util
import os
import sys
import traceback
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG

from pipeline_core.dag import authoring
from pipeline_core.dag.model import DAG
from pipeline_core.dag.serialize import DAG_FILE_MODULES
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.errors import DagValidationError, Issue

YAML_SUFFIXES = (".yaml", ".yml")
MODULE_PREFIX = DAG_FILE_MODULES
#: The attribute of a DAG file's module holding the text it ran: a worker process runs a
#: try's functions from the text of the DAG version the try is of, not from the file as it
#: is now.
SOURCE_ATTRIBUTE = "__pipeline_core_source__"


@dataclass(frozen=True)
class DagFile:
    """What one file yielded: its DAGs, or the problems that kept them from loading."""

    path: str
    dags: tuple[DAG, ...] = ()
    issues: tuple[Issue, ...] = ()
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: The file's text the DAGs were loaded from (kept with each new DAG version).
    source: str | None = None


@dataclass(frozen=True)
class DagBag:
    """Every DAG of a folder by id, plus the files that failed (``errors``)."""

    folder: str
    dags: dict[str, DAG]
    files: tuple[DagFile, ...]

    @property
    def errors(self) -> dict[str, tuple[Issue, ...]]:
        return {f.path: f.issues for f in self.files if f.issues}


def load_folder(folder: str | Path) -> DagBag:
    """Load every DAG file below ``folder``; a repeated ``dag_id`` is reported on the later file."""
    root = Path(folder).resolve()
    if not root.is_dir():
        issue = Issue(
            f"DAGs folder {str(root)!r} does not exist or is not a folder", file=str(root)
        )
        return DagBag(str(root), {}, (DagFile(str(root), issues=(issue,)),))
    add_to_sys_path(root)
    dags, files = merge([load_file(Path(path)) for path in in_order(dag_files(root))])
    return DagBag(str(root), dags, tuple(files))


def merge(files: Iterable[DagFile]) -> tuple[dict[str, DAG], list[DagFile]]:
    """Every DAG of ``files`` (in path order) by id; a ``dag_id`` a later file repeats is
    that file's issue, not a DAG."""
    dags: dict[str, DAG] = {}
    merged: list[DagFile] = []
    for loaded in files:
        kept, issues = [], list(loaded.issues)
        for dag in loaded.dags:
            if dag.dag_id in dags:
                first = dags[dag.dag_id].fileloc
                said = f"dag_id '{dag.dag_id}' is already defined in {first}"
                issues.append(Issue(said, "dag_id", loaded.path))
            else:
                dags[dag.dag_id] = dag
                kept.append(dag)
        if len(kept) == len(loaded.dags):
            merged.append(loaded)
        else:
            merged.append(dataclasses.replace(loaded, dags=tuple(kept), issues=tuple(issues)))
    return dags, merged


def add_to_sys_path(folder: Path) -> None:
    """Make modules beside the DAG files importable (idempotent)."""
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def in_order(paths: Iterable[str]) -> list[str]:
    """Paths in the order files are loaded (a folder's files before a later sibling's)."""
    return sorted(paths, key=lambda path: Path(path).parts)


def is_dag_file(name: str) -> bool:
    return name.endswith(YAML_SUFFIXES) or name.endswith(".py")


def dag_files(root: Path) -> dict[str, os.stat_result]:
    """Every DAG file below ``root`` with its ``stat``: hidden folders and ``__pycache__``
    skipped, symbolic links to folders not followed (a link loop cannot trap the walk). A
    folder that cannot be listed for want of descriptors or memory raises ``OSError`` (the
    files in it are not gone); one that vanished or is not readable is skipped."""

    def refuse(error: OSError) -> None:
        if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM) or error.filename == str(root):
            raise error

    found: dict[str, os.stat_result] = {}
    for folder, subfolders, names in os.walk(root, onerror=refuse):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "__pycache__"]
        for name in names:
            if name.startswith(".") or not is_dag_file(name):
                continue
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # gone meanwhile, or a dangling link
                continue
            if S_ISREG(stat.st_mode):
                found[path] = stat
    return found


def load_file(path: Path, known: DagFile | None = None) -> DagFile:
    """Load one YAML or Python DAG file, read once (its text is what the DAGs came from).
    ``known``: what a YAML file was parsed into when it had some text; that result, if the
    file still has exactly that text (nothing parsed again)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return DagFile(str(path), issues=(Issue(f"cannot read file: {exc}", "", str(path)),))
    if path.suffix in YAML_SUFFIXES:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return DagFile(str(path), issues=(Issue(f"cannot read file: {exc}", "", str(path)),))
        if known is not None and known.source == text and known.path == str(path):
            return known
        try:
            dag = load_dag_text(text, filename=str(path), default_dag_id=path.stem)
        except DagValidationError as exc:
            return DagFile(str(path), issues=tuple(exc.issues), source=text)
        return DagFile(str(path), dags=(dag,), source=text)
    return load_python(path, raw, module_name(path))


def module_name(path: Path) -> str:
    """The name a Python DAG file's module is loaded under (unique per path)."""
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:12]
    return f"{MODULE_PREFIX}{path.stem}_{digest}"


def load_python(path: Path, raw: bytes, name: str) -> DagFile:
    """Run a Python DAG file's text ``raw`` as module ``name`` (registered in
    ``sys.modules``, so that its functions can be found by name) and collect its DAGs."""
    source = importlib.util.decode_source(raw)
    try:
        module = run_dag_module(name, str(path), source)
    except DagValidationError as exc:
        return DagFile(str(path), issues=tuple(exc.issues), source=source)
    except Exception as exc:  # a DAG file is user code: any error is that file's problem
        return DagFile(str(path), issues=(_exception_issue(path, exc),), source=source)
    dags: list[DAG] = []
    for value in list(vars(module).values()):
        dag = value.build() if isinstance(value, authoring.DAG) else value
        if isinstance(dag, DAG) and all(d.dag_id != dag.dag_id for d in dags):
            dags.append(dag if dag.fileloc else dataclasses.replace(dag, fileloc=str(path)))
    return DagFile(str(path), dags=tuple(dags), source=source)


def run_dag_module(name: str, path: str, source: str) -> types.ModuleType:
    """Run a DAG file's text as module ``name``, registered in ``sys.modules`` (so that its
    functions are found by name) and carrying its text (so that a worker process runs the
    same). What the text raises is raised, and the module is not registered then — except
    a ``DagValidationError``, which leaves the DAGs defined before it."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    setattr(module, SOURCE_ATTRIBUTE, source)
    sys.modules[name] = module
    try:
        exec(compile(source, path, "exec"), vars(module))  # trusted code, as documented
    except DagValidationError:
        raise
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _exception_issue(path: Path, exc: Exception) -> Issue:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        line = exc.lineno
    return Issue(f"{type(exc).__name__}: {exc}", "", str(path), line)
