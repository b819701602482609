"""A DAG version rebuilt from the text its file had then (kept by the store with the version).

A YAML file is parsed again. A Python file runs again as a module of its own, named after
the version (``…_v<hash>``), so its functions are that version's wherever a try runs (a
worker process loads them from the text, as it does for every DAG file). Modules a task
imports by name (``callable: module:function``) are the ones deployed where the try runs.
"""

from __future__ import annotations

from pathlib import Path

from pipeline_core.dag.bag import YAML_SUFFIXES, load_python, module_name
from pipeline_core.dag.model import DAG
from pipeline_core.dag.yaml_loader import load_dag_text
from pipeline_core.errors import Conflict, DagValidationError


class VersionUnavailable(Conflict):
    """A DAG version that cannot be rebuilt: why, naming the version."""


def short(version: str) -> str:
    return version[:12]


def rebuild(dag_id: str, version: str, fileloc: str | None, source: str | None) -> DAG:
    """The DAG ``dag_id`` as version ``version`` defined it, from its file's text then.
    ``VersionUnavailable`` when there is no text, or it no longer loads."""
    where = f"version {short(version)} of DAG '{dag_id}'"
    if source is None or fileloc is None:
        raise VersionUnavailable(
            f"{where} was recorded without its file or the file's text (before versions were "
            "kept); retry with use_latest to run the latest version"
        )
    path = Path(fileloc)
    try:
        if path.suffix in YAML_SUFFIXES:
            dags: tuple[DAG, ...] = (
                load_dag_text(source, filename=fileloc, default_dag_id=path.stem),
            )
        else:
            name = f"{module_name(path)}_v{short(version)}"
            loaded = load_python(path, source.encode(), name)
            if loaded.issues:
                raise DagValidationError(list(loaded.issues))
            dags = loaded.dags
    except DagValidationError as exc:
        raise VersionUnavailable(
            f"{where} no longer loads: {'; '.join(i.message for i in exc.issues)}"
        ) from None
    for dag in dags:
        if dag.dag_id == dag_id:
            vars(dag)["version"] = version  # it is that version, whatever it hashes to now
            return dag
    raise VersionUnavailable(f"{where}: its file's text no longer defines the DAG")
