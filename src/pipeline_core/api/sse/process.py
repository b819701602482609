"""``ProcessStreams``: live event streams written by a process of their own.

Fanning thousands of events out to hundreds of sockets is interpreter work; in the engine's
process it would compete with the engine for the interpreter lock. Here the API process checks
a stream request and sends the headers, then passes the connection — its file descriptor, over
a Unix socket — to a stream process, which follows the store's event log and writes every
stream with ``ThreadStreams``. The API process wakes it through a pipe whenever it sees events
committed, so delivery needs no polling. If the stream process dies, the next stream starts a
new one (clients of the old one reconnect and resume from their last id).

Run as ``python -m pipeline_core.api.sse.process CONTROL_FD WAKE_FD``; the first message
on the control socket is the configuration (it carries the database URL, kept out of argv).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline_core.api.sse.route import StreamStart
from pipeline_core.api.sse.threads import ThreadStreams
from pipeline_core.events import Event
from pipeline_core.store.factory import open_store
from pipeline_core.store.feed import EventFeed

log = logging.getLogger("pipeline_core.api")
MESSAGE_MAX = 64 * 1024
STOP_WAIT = 5.0


class ProcessStreams:
    def __init__(
        self,
        database_url: str,
        keepalive: float,
        queue_size: int,
        socket_timeout: float,
    ) -> None:
        self._config = json.dumps(
            {
                "url": database_url,
                "keepalive": keepalive,
                "queue_size": queue_size,
                "socket_timeout": socket_timeout,
                "log_level": logging.getLogger("pipeline_core").getEffectiveLevel(),
            }
        ).encode()
        self._lock = threading.Lock()  # attaching, replacing and stopping the process
        self._wake_lock = threading.Lock()  # the wake pipe, which commits write to
        self._stopped = False
        self._spawn()

    def _spawn(self) -> None:
        control, child_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        package_root = str(Path(__file__).parents[2])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(child_control.fileno()), str(wake_r)],
            pass_fds=(child_control.fileno(), wake_r),
            env={**os.environ, "PYTHONPATH": path},
        )
        child_control.close()
        os.close(wake_r)
        control.settimeout(STOP_WAIT)  # a stream process that stops reading counts as dead
        control.sendall(self._config)
        self._control = control
        with self._wake_lock:
            self._wake: int | None = wake_w

    def publish(self, events: list[Event]) -> None:
        with self._wake_lock, contextlib.suppress(OSError):  # a full pipe: a wake-up is pending
            if self._wake is not None:
                os.write(self._wake, b"x")

    def attach(self, sock: socket.socket, start: StreamStart) -> None:
        try:
            with self._lock:
                if self._stopped:
                    return
                try:
                    socket.send_fds(self._control, [start.to_json()], [sock.fileno()])
                except OSError:
                    log.warning(
                        "the event stream process ended (exit code %s); starting a new one",
                        self._process.poll(),
                    )
                    self._end_process()
                    self._spawn()
                    socket.send_fds(self._control, [start.to_json()], [sock.fileno()])
        finally:
            sock.close()  # the stream process holds its own descriptor now

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._end_process()

    def _end_process(self) -> None:
        """Closing the control socket tells the stream process to end its streams and exit."""
        self._control.close()
        with self._wake_lock:
            if self._wake is not None:
                os.close(self._wake)
            self._wake = None
        try:
            self._process.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main(control_fd: int, wake_fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the API process, which ends us
    control = socket.socket(fileno=control_fd)
    config = json.loads(control.recv(MESSAGE_MAX))
    logging.basicConfig(
        level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = open_store(config["url"])
    streams = ThreadStreams(store, config["keepalive"], config["queue_size"])
    ended = threading.Event()
    feed = EventFeed(store, wait=_woken_by(wake_fd, ended))  # woken by the API process
    feed.subscribe(streams.publish)
    try:
        while True:
            message, fds, _, _ = socket.recv_fds(control, MESSAGE_MAX, 1)
            if not message:
                break  # the API process closed the control socket, or died
            if not fds:
                continue
            sock = socket.socket(fileno=fds[0])
            sock.settimeout(config["socket_timeout"])
            start = StreamStart.from_json(message)
            threading.Thread(target=streams.attach, args=(sock, start), daemon=True).start()
    finally:
        ended.set()
        feed.close()
        streams.stop()
        store.close()


def _woken_by(wake_fd: int, ended: threading.Event) -> Callable[[int, float], bool]:
    """The feed's wait: the API process writes to ``wake_fd`` after each commit. Once it
    closes the pipe (stopping, or gone) the control socket ends this process, which sets
    ``ended``; until then an empty read must not spin."""

    def wait(after_seq: int, timeout: float) -> bool:
        readable, _, _ = select.select([wake_fd], [], [], timeout)
        if not readable:
            return False
        if os.read(wake_fd, 4096):
            return True
        ended.wait(timeout)
        return False

    return wait


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
