"""``GET .../tasks/:task_id/logs?follow=true``: a try's log streamed as it is written.

The answer is ``text/plain``, chunked (HTTP/1.1; an HTTP/1.0 answer ends by closing): first
what the log holds from ``offset``, then each new piece as the engine stores it, and the body
ends once the try has ended and its last line is sent (or ``limit`` bytes are). A task that
has not started its first try yet is waited for. Each follower has a thread of its own,
outside the handler pool, and there are at most ``LogFollowers.limit`` at once (503 above).

Log writes announce nothing, so a follower reads the log again every ``POLL`` seconds, or at
once when the event log moves (a try that ends ends its stream without waiting a poll).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass

from pipeline_core.api.http import HTTPError
from pipeline_core.api.transport.framing import LAST_CHUNK, chunk
from pipeline_core.errors import PipelineError
from pipeline_core.model import TaskKey
from pipeline_core.state import FINISHED_TASK_STATES, TaskState
from pipeline_core.store.base import Store

log = logging.getLogger("pipeline_core.api")
POLL = 0.25
PIECE = 256 * 1024


@dataclass(frozen=True)
class FollowedLog:
    """What a follower streams: one try's log from ``offset``, ``limit`` bytes at most."""

    key: TaskKey
    try_number: int
    offset: int = 0
    limit: int | None = None


class LogFollowers:
    def __init__(self, store: Store, limit: int = 64) -> None:
        self.store = store
        self.limit = limit
        self._lock = threading.Lock()
        self._count = 0
        self._stopped = threading.Event()

    def check(self) -> None:
        """503 while every place is taken (checked before the answer's head goes out)."""
        with self._lock:
            if self._count >= self.limit:
                raise HTTPError(
                    503,
                    "unavailable",
                    f"{self.limit} logs are being followed already; retry shortly",
                    headers={"Retry-After": "1"},
                )

    def start(self, sock: socket.socket, chunked: bool, wanted: FollowedLog) -> None:
        """Stream to ``sock`` (its head sent) on a thread of its own."""
        with self._lock:
            self._count += 1
        thread = threading.Thread(
            target=self._follow, args=(sock, chunked, wanted), name="api-log-follow", daemon=True
        )
        thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _follow(self, sock: socket.socket, chunked: bool, wanted: FollowedLog) -> None:
        try:
            self._stream(sock, chunked, wanted)
            if chunked:
                sock.sendall(LAST_CHUNK)
        except OSError:
            pass  # the client went away
        except PipelineError as exc:  # the store went away, or the run was deleted
            log.warning("following the log of %s ended: %s", wanted.key, exc.message)
        finally:
            with self._lock:
                self._count -= 1
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _stream(self, sock: socket.socket, chunked: bool, wanted: FollowedLog) -> None:
        store, key, try_number = self.store, wanted.key, wanted.try_number
        seen = store.events.event_bounds()[1]
        offset = wanted.offset
        end = offset + wanted.limit if wanted.limit is not None else None
        while not self._stopped.is_set():
            ti = store.tasks.get_task_instance(key)
            going_on = (ti.try_number == try_number and ti.state is TaskState.RUNNING) or (
                ti.try_number < try_number and ti.state not in FINISHED_TASK_STATES
            )
            while end is None or offset < end:  # everything written so far, in pieces
                most = PIECE if end is None else min(PIECE, end - offset)
                piece = store.task_data.read_log(key, try_number, offset=offset, limit=most)
                if not piece.text:
                    break
                data = piece.text.encode()
                sock.sendall(b"".join(chunk(data)) if chunked else data)
                offset = piece.next_offset
            if not going_on or (end is not None and offset >= end) or not _peer_alive(sock):
                return
            store.wait_for_events(seen, POLL)
            seen = store.events.event_bounds()[1]


def _peer_alive(sock: socket.socket) -> bool:
    """Whether the client still holds the connection (it sends nothing more)."""
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        try:
            return sock.recv(1, socket.MSG_PEEK) != b""
        finally:
            sock.settimeout(timeout)
    except BlockingIOError:
        return True
    except OSError:
        return False
