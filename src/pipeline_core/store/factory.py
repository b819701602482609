"""``open_store(url)``: the one place that picks a backend from a database URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pipeline_core.errors import ConfigurationError
from pipeline_core.store.base import DEFAULT_LOG_CAP_BYTES, Store


def open_store(
    url: str, *, log_cap_bytes: int = DEFAULT_LOG_CAP_BYTES, connections: int | None = None
) -> Store:
    """Open the store at ``url``.

    * ``sqlite:///relative/or/absolute.db`` (``sqlite:////abs/path.db`` also works) or a plain
      file path: the embedded SQLite store.
    * ``postgresql://user:password@host:5432/db`` (``postgres://`` too; ``?schema=NAME`` keeps
      the tables in that schema): PostgreSQL, with the ``postgres`` extra installed.
    ``connections`` sizes PostgreSQL's connection pool (default 8): as many as the threads
    that use the store at once.

    * ``memory://`` (or ``sqlite:///:memory:``): SQLite in this process's memory, shared by its
      threads, gone when the store is closed.
    """
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme in ("", "file", "sqlite"):
        from pipeline_core.store.sqlite.store import SqliteStore

        return SqliteStore(_sqlite_path(url), log_cap_bytes=log_cap_bytes)
    if scheme in ("postgres", "postgresql"):
        from pipeline_core.store.postgres.store import PostgresStore

        return PostgresStore(url, log_cap_bytes=log_cap_bytes, pool_size=connections or 8)
    if scheme == "memory":
        from pipeline_core.store.sqlite.store import SqliteStore

        return SqliteStore(":memory:", log_cap_bytes=log_cap_bytes)
    raise ConfigurationError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:///path.db, "
        "postgresql://user@host/db or memory://"
    )


def _sqlite_path(url: str) -> str:
    for prefix in ("sqlite:///", "sqlite://", "file://"):
        if url.startswith(prefix):
            path = url[len(prefix) :]
            break
    else:
        path = url
    if not path:
        raise ConfigurationError(f"database URL {url!r} names no file")
    return path if path == ":memory:" else str(Path(path).expanduser())
