"""``ParsedFiles``: the YAML DAG files as last parsed, kept on disk, so that a restart with
thousands of unchanged files reads each one but parses none.

A file's parsed result is used again only when the file has exactly the text it was parsed
from (compared whole, so there is no stale entry to trust). The cache is one pickle, written
whole and atomically (a temporary file renamed over it), readable by its owner only, and
ignored — the files are then parsed — when it is missing, damaged, from another version of
pipeline-core or Python, or writable by anyone else. Python DAG files are never kept: their
functions exist only once their module has run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from pipeline_core._version import __version__
from pipeline_core.dag.bag import YAML_SUFFIXES, DagFile
from pipeline_core.dag.packed import dumps

log = logging.getLogger("pipeline_core.scheduler")
#: What a cache must have been written by to be read: this format, version and Python.
STAMP = ("pipeline-core-parsed/2", __version__, sys.version_info[:2])


def default_path(folder: str | Path) -> Path:
    """Where the cache of a DAGs folder lives: ``dags-<hash of the folder's path>.pickle`` in
    ``$PIPELINE_CORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pipeline-core`` (``~/.cache``)."""
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    where = os.environ.get("PIPELINE_CORE_CACHE_DIR") or str(Path(home) / "pipeline-core")
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return Path(where) / f"dags-{digest}.pickle"


class ParsedFiles:
    """The parsed YAML files of one folder, by path, as the cache at ``path`` holds them.

    Each file is kept pickled on its own and unpickled only when it is looked up, then let
    go: opening the cache costs reading its bytes (10,000 files: about 15 MB, tens of
    milliseconds), and it holds memory only until each file was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._kept: dict[str, bytes] = self._read()

    def get(self, path: str) -> DagFile | None:
        """What ``path`` was parsed into when the cache was written (once; None if unknown)."""
        data = self._kept.pop(path, None)
        if data is None:
            return None
        try:
            loaded = pickle.loads(data)
        except Exception:  # whatever a damaged entry raises: the file is parsed
            return None
        return loaded if isinstance(loaded, DagFile) else None

    def save(self, files: Iterable[DagFile]) -> None:
        """Keep ``files`` (their YAML ones) as the cache; a failure is a warning, and a file
        that cannot be pickled is left out."""
        kept: dict[str, bytes] = {}
        for file in files:
            if file.source is None or not file.path.endswith(YAML_SUFFIXES):
                continue
            try:
                kept[file.path] = dumps(file)  # its DAGs' tasks as they are kept: packed
            except (pickle.PicklingError, TypeError, AttributeError):
                continue
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                pickle.dump((STAMP, kept), out, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(partial, self.path)
        except OSError as exc:
            log.warning("cannot keep the parsed DAG files in %s: %s", self.path, exc)

    def _read(self) -> dict[str, bytes]:
        try:
            with self.path.open("rb") as source:
                mode = os.fstat(source.fileno())
                if mode.st_uid != os.getuid() or mode.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    log.warning("ignoring %s: it is not this user's alone", self.path)
                    return {}
                stamp, files = pickle.load(source)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # whatever a damaged pickle raises: only a slower start
            log.warning("ignoring the parsed DAG files in %s: %s", self.path, exc)
            return {}
        if stamp != STAMP or not isinstance(files, dict):
            return {}
        return files
