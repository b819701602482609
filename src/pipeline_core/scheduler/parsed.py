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
import io
import logging
import os
import pickle
import stat
import sys
import threading
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline_core._version import __version__
from pipeline_core.dag.bag import YAML_SUFFIXES, DagFile

log = logging.getLogger("pipeline_core.scheduler")
#: What a cache must have been written by to be read: this format, version and Python.
STAMP = ("pipeline-core-parsed/1", __version__, sys.version_info[:2])


def default_path(folder: str | Path) -> Path:
    """Where the cache of a DAGs folder lives: ``dags-<hash of the folder's path>.pickle`` in
    ``$PIPELINE_CORE_CACHE_DIR``, else ``$XDG_CACHE_HOME/pipeline-core`` (``~/.cache``)."""
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    where = os.environ.get("PIPELINE_CORE_CACHE_DIR") or str(Path(home) / "pipeline-core")
    digest = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return Path(where) / f"dags-{digest}.pickle"


def _proxy(items: dict[Any, Any]) -> types.MappingProxyType[Any, Any]:
    return types.MappingProxyType(items)


class _Pickler(pickle.Pickler):
    """Pickles the read-only mappings a DAG holds (``MappingProxyType``) as what they wrap."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is types.MappingProxyType:
            return _proxy, (dict(obj),)
        return NotImplemented


class ParsedFiles:
    """The parsed YAML files of one folder, by path, as the cache at ``path`` holds them.

    The cache is read in a thread of its own (10,000 files take about a second): a start does
    not wait for it, and the files looked up before it is read are parsed as without it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, DagFile] = {}
        self._reader = threading.Thread(target=self._load, name="parsed-files", daemon=True)
        self._reader.start()

    def get(self, path: str) -> DagFile | None:
        return self.files.get(path)

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the cache has been read (waiting up to ``timeout`` for it)."""
        self._reader.join(timeout)
        return not self._reader.is_alive()

    def _load(self) -> None:
        files = self._read()
        if not self.files:  # nothing saved meanwhile
            self.files = files

    def save(self, files: Iterable[DagFile]) -> None:
        """Keep ``files`` (their YAML ones) as the cache; a failure is a warning."""
        self.wait()  # the file being read is not written under the reader
        kept = {f.path: f for f in files if f.source is not None and f.path.endswith(YAML_SUFFIXES)}
        buffer = io.BytesIO()
        try:
            _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump((STAMP, kept))
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(buffer.getbuffer())
            os.replace(partial, self.path)
        except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
            log.warning("cannot keep the parsed DAG files in %s: %s", self.path, exc)
            return
        self.files = kept

    def _read(self) -> dict[str, DagFile]:
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
