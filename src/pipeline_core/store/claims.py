"""Claims: a name at most one process holds at a time, given up when it releases it or dies.

``pipeline-core scheduler`` claims ``active-engine`` before it starts its engine: of several
schedulers on one database exactly one is active and the others wait. The database ends a
claim when its holder dies — PostgreSQL drops a session's advisory lock with its connection;
on SQLite the claim is a ``flock`` on a file beside the database, which the kernel drops with
the process — so a standby takes over as soon as it asks again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

_IN_PROCESS: set[tuple[int, str]] = set()
_IN_PROCESS_LOCK = threading.Lock()


class Claim(Protocol):
    name: str

    def release(self) -> None: ...


class FileClaim:
    """A claim on one host: an exclusive ``flock`` on ``path``."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path, name: str) -> FileClaim | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(name, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


class ProcessClaim:
    """A claim within one process (an in-memory database has no other process)."""

    def __init__(self, key: tuple[int, str]) -> None:
        self.name = key[1]
        self._key: tuple[int, str] | None = key

    @classmethod
    def take(cls, owner: object, name: str) -> ProcessClaim | None:
        key = (id(owner), name)
        with _IN_PROCESS_LOCK:
            if key in _IN_PROCESS:
                return None
            _IN_PROCESS.add(key)
        return cls(key)

    def release(self) -> None:
        with _IN_PROCESS_LOCK:
            if self._key is not None:
                _IN_PROCESS.discard(self._key)
                self._key = None


class AdvisoryClaim:
    """A PostgreSQL session advisory lock held on a connection of its own, checked every
    ``check_every`` seconds: if the connection is lost, so is the claim (another process may
    hold it by then), and ``on_lost`` is called."""

    def __init__(
        self, name: str, connection: Any, on_lost: Callable[[], None], check_every: float
    ) -> None:
        self.name = name
        self._connection = connection
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._check_every = check_every
        self._thread = threading.Thread(target=self._watch, name="claim-watch", daemon=True)
        self._thread.start()

    @classmethod
    def take(
        cls,
        connect: Callable[[], Any],
        name: str,
        on_lost: Callable[[], None],
        check_every: float = 1.0,
        scope: str | None = None,
    ) -> AdvisoryClaim | None:
        """``scope``: the schema the store lives in. Advisory locks belong to the whole
        database, so stores in two schemas of one database must not share a key."""
        connection = connect()
        key = f"pipeline_core:{name}" if scope is None else f"pipeline_core:{scope}:{name}"
        row = connection.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        if not row or not row[0]:
            connection.close()
            return None
        return cls(name, connection, on_lost, check_every)

    def _watch(self) -> None:
        while not self._stop.wait(self._check_every):
            try:
                self._connection.execute("SELECT 1")
            except Exception:
                if not self._stop.is_set():
                    self._on_lost()
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            self._connection.close()  # the lock goes with the session
