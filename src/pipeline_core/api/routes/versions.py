"""``/dags/:dag_id/versions``: every distinct definition a DAG has had, one with its file's
text, and what changed between two."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import Any

from pipeline_core.api.http import Request, Response, envelope, listing
from pipeline_core.api.openapi.operation import DAG, PAGE, Operation, Param
from pipeline_core.api.openapi.parts import envelope_of
from pipeline_core.api.openapi.schemas import ref
from pipeline_core.api.params import page
from pipeline_core.model import iso
from pipeline_core.store.base import Store
from pipeline_core.store.dags import DagVersion

VERSION_PARAM = Param(
    "version", "path", {"type": "string", "pattern": "^[0-9a-fA-F]{6,64}$", "maxLength": 64}
)
LIST = Operation(
    "list_dag_versions",
    "dags",
    "A DAG's versions, newest first",
    "Every distinct definition the DAG has had (its content hash), when it was first seen "
    "and the file it came from. Versions stay when their file is deleted, so the runs "
    "that ran them stay readable.",
    envelope_of(ref("DagVersion"), listing=True),
    (*DAG, *PAGE),
    read=True,
)
GET = Operation(
    "get_dag_version",
    "dags",
    "One version of a DAG, with its file's text",
    "A version by its hash or a prefix of at least 6 characters of it: the file's text "
    "then, the definition, and with `diff_from` (another version) a unified diff of the "
    "two texts (of the definitions when a text was not kept).",
    envelope_of(ref("DagVersionDetail")),
    (
        *DAG,
        VERSION_PARAM,
        Param("diff_from", schema={"type": "string", "pattern": "^[0-9a-fA-F]{6,64}$"}),
    ),
    read=True,
)


def version_dict(version: DagVersion, latest: str | None) -> dict[str, Any]:
    return {
        "dag_id": version.dag_id,
        "version": version.version,
        "first_seen": iso(version.first_seen),
        "fileloc": version.fileloc,
        "task_count": version.task_count,
        "is_latest": version.version == latest,
    }


def list_versions(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        dag_id = request.params["dag_id"]
        limit, offset = page(request)
        latest = store.dags.get_dag(dag_id).definition_hash
        found = store.dags.list_versions(dag_id, limit=limit, offset=offset)
        data = [version_dict(v, latest) for v in found.items]
        return listing(data, found.total, limit, offset)

    return handle


def get_version(store: Store) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        dag_id = request.params["dag_id"]
        latest = store.dags.get_dag(dag_id).definition_hash
        version = store.dags.get_version(dag_id, request.params["version"])
        data = {
            **version_dict(version, latest),
            "source": version.source,
            "definition": version.definition,
        }
        if request.args.get("diff_from"):
            other = store.dags.get_version(dag_id, request.args["diff_from"])
            data["diff_from"], data["diff"] = other.version, diff(other, version)
        return envelope(data)

    return handle


def diff(old: DagVersion, new: DagVersion) -> str:
    """A unified diff from ``old`` to ``new``: of the files' texts when both were kept, else
    of the definitions."""
    if old.source is not None and new.source is not None:
        before, after = old.source, new.source
    else:
        before, after = _definition_text(old), _definition_text(new)
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{old.dag_id}@{old.version[:12]}",
        tofile=f"{new.dag_id}@{new.version[:12]}",
    )
    return "".join(lines)


def _definition_text(version: DagVersion) -> str:
    return json.dumps(version.definition, indent=2, sort_keys=True) + "\n"
