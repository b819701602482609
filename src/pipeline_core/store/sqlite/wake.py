"""Waking the processes that follow one SQLite file, at no cost while nothing happens.

SQLite has no LISTEN/NOTIFY. Instead every process that waits for events binds a Unix
datagram socket in a folder of its own for the database (named by a hash of the file's real
path, under the temporary directory, private to the user); a process that commits events
sends one byte to each other waiter's socket there. A waiting process sleeps in ``select`` on its
socket — no poll of the database — and reads the event counter only when woken (and once
every ``SAFETY_INTERVAL`` in case a writer could not reach it: a full socket buffer already
means a wake is pending; a writer of another program sends nothing). Sockets of processes
that are gone are removed by the next writer that finds them refusing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from pipeline_core.store.seq_waiter import SeqWaiter

#: Seconds between reads of the event counter when no wake comes.
SAFETY_INTERVAL = 5.0


def wake_folder(database: str) -> Path:
    """Where the processes following ``database`` keep their sockets (short enough for a
    socket path however deep the database lies)."""
    digest = hashlib.sha1(os.path.realpath(database).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pipeline-core-{os.getuid()}" / digest


class WakeSender:
    """Sends a wake to every process waiting on the database's folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stamp: float | None = None
        self._targets: list[str] = []
        self._socket: socket.socket | None = None  # opened when there is someone to wake
        self._lock = threading.Lock()

    def wake(self, skip: str | None = None) -> None:
        """Wake every waiter but ``skip`` (the committing store's own, told directly)."""
        with self._lock:
            targets = [t for t in self._current_targets() if t != skip]
            if targets and self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            for target in targets:
                assert self._socket is not None
                try:
                    self._socket.sendto(b"\x01", target)
                except BlockingIOError:
                    pass  # its buffer is full: a wake is waiting for it already
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        os.unlink(target)  # its process is gone
                except OSError:
                    pass

    def _current_targets(self) -> list[str]:
        try:
            stamp = self.folder.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if stamp != self._stamp:
            self._stamp = stamp
            self._targets = [str(p) for p in self.folder.glob("*.sock")]
        return self._targets

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


class WakeListener(SeqWaiter):
    """A ``SeqWaiter`` that other processes wake: one thread sleeps on the socket and reads
    the event counter (``read_counter``) when woken."""

    def __init__(self, folder: Path, read_counter: Callable[[], int]) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.path))  # before reading the counter: no commit in between
        self._socket.setblocking(False)  # goes unannounced
        super().__init__(read_counter())
        self._stop_r, self._stop_w = os.pipe()
        self._read_counter = read_counter
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="sqlite-wake", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping:
            watched = [self._socket.fileno(), self._stop_r]
            readable, _, _ = select.select(watched, [], [], SAFETY_INTERVAL)
            if self._stop_r in readable:
                return
            with contextlib.suppress(BlockingIOError, OSError):
                while self._socket.recv(64):
                    pass
            with contextlib.suppress(Exception):  # a closed or busy store: next time
                self.seen(self._read_counter())

    def close(self) -> None:
        super().close()
        self._stopping = True
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        self._socket.close()
        os.close(self._stop_r)
        os.close(self._stop_w)
        with contextlib.suppress(OSError):
            self.path.unlink()
