"""The fork server of the worker pool:
``python -m pipeline_core.engine.executors.workers.zygote FD [MODULE ...]``.

It imports pipeline_core (and the preload modules) once, then forks a worker for every
``spawn`` request that arrives on the control socket ``FD`` together with the worker's end
of its connection. Being single-threaded, it can fork safely, which the engine's process,
full of threads, cannot. It reaps its workers and reports how each ended, since only a
parent can learn a child's exit status.

No worker outlives the engine: when the control socket closes (the engine exited, however it
died) or the zygote's parent dies (``PR_SET_PDEATHSIG``), the zygote kills every worker's
process group, and each worker has the same parent-death signal set against the zygote.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from typing import Any

from pipeline_core.engine.executors.workers.main import run_worker, set_parent_death_signal
from pipeline_core.engine.executors.workers.wire import CONTROL_MESSAGE_BYTES


def send(control: socket.socket, **message: Any) -> None:
    control.send(json.dumps(message).encode())


class Zygote:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.workers: set[int] = set()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        selector = selectors.DefaultSelector()
        selector.register(self.control, selectors.EVENT_READ)
        selector.register(self.wake_r, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.control and not self._request():
                    self.kill_all()
                    return
                if key.fileobj == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
            self._reap()

    def _request(self) -> bool:
        """Handle one control message; ``False`` when the engine has gone."""
        try:
            data, fds, _, _ = socket.recv_fds(self.control, CONTROL_MESSAGE_BYTES, 1)
        except OSError:
            return False
        if not data:
            return False
        request = json.loads(data)
        if "spawn" in request and fds:
            self._spawn(request["spawn"], fds[0])
        return True

    def _spawn(self, token: int, fd: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 70
            try:
                code = _become_worker(self, fd)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(fd)
        self.workers.add(pid)
        send(self.control, spawned=token, pid=pid)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.workers.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):
                send(self.control, exited=pid, code=code)

    def kill_all(self) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _become_worker(zygote: Zygote, fd: int) -> int:
    parent = os.getppid()
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    zygote.control.close()
    os.close(zygote.wake_r)
    os.close(zygote.wake_w)
    os.setsid()  # a group of its own: stopping a try signals exactly this group
    return run_worker(fd, parent)


def main(argv: list[str]) -> int:
    control = socket.socket(fileno=int(argv[0]))
    zygote = Zygote(control)

    def stop(*_: object) -> None:
        zygote.kill_all()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    set_parent_death_signal(signal.SIGTERM)
    module = ""
    try:
        for module in argv[1:]:
            importlib.import_module(module)
    except BaseException as exc:
        send(control, error=f"cannot preload {module!r}: {type(exc).__name__}: {exc}")
        return 1
    send(control, ready=os.getpid())
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
