"""Starting worker processes: the zygote that forks warm workers, and fresh interpreters for
``executor: process``. Both are started from the pool's supervisor thread, which lives as
long as the pool: a parent-death signal fires when the *thread* that started a child ends."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

from pipeline_core.engine.executors.workers.wire import CONTROL_MESSAGE_BYTES
from pipeline_core.errors import ConfigurationError

START_TIMEOUT = 30.0


def _child_env() -> dict[str, str]:
    """This process's import path, so a child imports the same pipeline_core and DAG modules."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


class ZygoteClient:
    """The control socket of a running zygote (``workers/zygote.py``)."""

    def __init__(self, python: str, preload: tuple[str, ...]) -> None:
        """Start the zygote and wait until it is ready; ``ConfigurationError`` naming the
        reason when it cannot start (bad interpreter, a preload module that fails)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [
                    python,
                    "-m",
                    "pipeline_core.engine.executors.workers.zygote",
                    str(theirs.fileno()),
                    *preload,
                ],
                pass_fds=[theirs.fileno()],
                start_new_session=True,  # a signal to the engine's group must not reach it
                stdin=subprocess.DEVNULL,
                env=_child_env(),
            )
        except OSError as exc:
            ours.close()
            raise ConfigurationError(f"cannot run {python}: {exc.strerror or exc}") from None
        finally:
            theirs.close()
        self.socket = ours
        ours.settimeout(START_TIMEOUT)
        try:
            first = self.receive() or {}
        except (TimeoutError, OSError, ValueError):
            first = {}
        ours.settimeout(None)
        if "ready" not in first:
            self.close()
            reason = first.get("error") or (
                f"the worker zygote exited with code {self.process.poll()} before it was ready"
            )
            raise ConfigurationError(reason)

    def spawn(self, token: int) -> socket.socket:
        """Ask for a worker; returns the engine's end of its connection. The zygote answers
        ``{"spawned": token, "pid": ...}`` and later ``{"exited": pid, "code": ...}``."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            request = json.dumps({"spawn": token}).encode()
            socket.send_fds(self.socket, [request], [theirs.fileno()])
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def receive(self) -> dict[str, Any] | None:
        """The next message, ``None`` once the zygote has gone."""
        try:
            data = self.socket.recv(CONTROL_MESSAGE_BYTES)
        except OSError:
            return None
        return json.loads(data) if data else None

    def close(self) -> None:
        """Closing the socket makes the zygote kill every worker left and exit."""
        self.socket.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_fresh_worker(python: str) -> tuple[subprocess.Popen[bytes], Connection]:
    """A one-try worker in a new interpreter, leading a process group of its own."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [python, "-m", "pipeline_core.engine.executors.workers.main", str(theirs.fileno()),
             str(os.getpid())],
            pass_fds=[theirs.fileno()],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            env=_child_env(),
        )  # fmt: skip
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, Connection(ours.detach())
