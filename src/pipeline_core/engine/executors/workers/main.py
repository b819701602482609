"""The loop of one worker process: receive a try, run its handler, report how it ended.

A worker runs one try at a time on its main thread, in a process group of its own, so that
the engine can stop a try by signalling the group (the try's children with it). Everything
the task context needs from the store goes through the engine over the worker's connection:
XCom reads are requests answered by the engine, XCom writes and log lines are messages it
applies in order before the try's ``done``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from pipeline_core.credentials.connections import Connection as CredentialConnection
from pipeline_core.credentials.lookup import CredentialMissing
from pipeline_core.dag.model import DAG, format_size
from pipeline_core.engine.executors.workers import wire
from pipeline_core.engine.tasks.context import TaskContext, TaskFailed
from pipeline_core.engine.tasks.handlers import HANDLERS
from pipeline_core.engine.tasks.logs import ROUTER, TaskLog
from pipeline_core.model import DagRun, TaskKey
from pipeline_core.store.types import XComEntry

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent thread exits (no-op
    elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def run_worker(fd: int, parent: int, *, one_shot: bool = False) -> int:
    """Serve tries on connection ``fd`` as the leader of this process group; ``parent`` is
    the process that started this one, whose death ends the group."""
    # The parent gone means the engine is gone: take the whole group (the try's children too).
    signal.signal(signal.SIGHUP, lambda *_: os.killpg(0, signal.SIGKILL))
    set_parent_death_signal(signal.SIGHUP)
    if os.getppid() != parent:
        return 1
    connection = Connection(fd)
    try:
        connection.send_bytes(wire.dumps((wire.READY, os.getpid())))
        Worker(connection, one_shot=one_shot).serve()
    except ConnectionError:  # the engine has gone: nobody is left to tell
        return 1
    return 0


class _TaskDataProxy:
    """The part of ``TaskDataStore`` a task context uses, forwarded to the engine. ``lock`` keeps
    whole messages (and an XCom read's question and answer) together: the log flusher and
    a task's own threads send too."""

    def __init__(self, connection: Connection, lock: threading.Lock) -> None:
        self.connection, self.lock = connection, lock

    def append_log(self, key: TaskKey, try_number: int, text: str) -> None:
        with self.lock:
            self.connection.send_bytes(wire.dumps((wire.LOG, text)))

    def set_xcom(self, key: TaskKey, name: str, value: Any) -> None:
        with self.lock:
            self.connection.send_bytes(wire.dumps((wire.SET_XCOM, name, value)))

    def get_xcom(self, key: TaskKey, name: str) -> XComEntry | None:
        return self._ask(key, name, False)

    def get_mapped_xcom(self, key: TaskKey, name: str) -> XComEntry:
        entry = self._ask(key, name, True)
        assert entry is not None
        return entry

    def _ask(self, key: TaskKey, name: str, mapped: bool) -> XComEntry | None:
        with self.lock:
            self.connection.send_bytes(wire.dumps((wire.GET_XCOM, key.task_id, name, mapped)))
            (entry,) = wire.loads(self.connection.recv_bytes())
        return entry  # type: ignore[no-any-return]


class _CredentialProxy:
    """Variables and connections, asked of the engine (which registers the secrets it
    answers with this try's masker before the answer leaves)."""

    def __init__(self, connection: Connection, lock: threading.Lock) -> None:
        self.link, self.lock = connection, lock

    def variable(self, key: str) -> Any:
        return self._ask("variable", key)

    def connection(self, conn_id: str) -> CredentialConnection:
        found: CredentialConnection = self._ask("connection", conn_id)
        return found

    def _ask(self, kind: str, name: str) -> Any:
        with self.lock:
            self.link.send_bytes(wire.dumps((wire.GET_CREDENTIAL, kind, name)))
            value, error = wire.loads(self.link.recv_bytes())
        if error is not None:
            raise CredentialMissing(error)
        return value


class _MetricsProxy:
    """Metrics recorded by task code, forwarded to the engine's collector."""

    def __init__(self, connection: Connection, lock: threading.Lock) -> None:
        self.connection, self.lock = connection, lock

    def _send(self, kind: str, name: str, value: float, labels: dict[str, str]) -> None:
        with self.lock:
            self.connection.send_bytes(wire.dumps((wire.METRIC, kind, name, value, labels)))

    def counter(self, name: str, value: float = 1, /, **labels: str) -> None:
        self._send("counter", name, value, labels)

    def gauge(self, name: str, value: float, /, **labels: str) -> None:
        self._send("gauge", name, value, labels)

    def histogram(self, name: str, value: float, /, **labels: str) -> None:
        self._send("histogram", name, value, labels)


class Worker:
    def __init__(self, connection: Connection, *, one_shot: bool = False) -> None:
        self.connection = connection
        self.one_shot = one_shot
        self.sending = threading.Lock()
        self.task_data = _TaskDataProxy(connection, self.sending)
        self.metrics = _MetricsProxy(connection, self.sending)
        self.credentials = _CredentialProxy(connection, self.sending)
        self.dags: dict[int, DAG] = {}
        self._last_run: tuple[bytes, DagRun | None] = (b"", None)

    def serve(self) -> None:
        """Answer jobs until the engine closes the connection."""
        ROUTER.install()
        while True:
            try:
                message = wire.loads(self.connection.recv_bytes())
            except (EOFError, ConnectionError):  # the engine has gone
                return
            if message[0] == wire.DAG:
                self._add_dag(*message[1:])
            elif message[0] == wire.RUN:
                job = wire.WireJob.from_message(message)
                done = wire.dumps((wire.DONE, *self.run(job)))
                with self.sending:
                    self.connection.send_bytes(done)
                if self.one_shot:
                    return

    def _add_dag(self, token: int, data: bytes, path: list[str]) -> None:
        # Folders the engine put on its import path since (DAG folders) are needed here too.
        sys.path[:0] = [entry for entry in path if entry not in sys.path]
        if len(self.dags) >= wire.KEEP_DAGS:
            self.dags.pop(next(iter(self.dags)))
        self.dags[token] = wire.loads(data)

    def _run_of(self, data: bytes) -> DagRun:
        cached, run = self._last_run
        if run is None or data != cached:
            run = wire.loads(data)
            self._last_run = (data, run)
        return run

    def run(self, job: wire.WireJob) -> tuple[str, str | None, Any, bool]:
        """(outcome, error, follow, poke_ok) of one try."""
        dag = self.dags[job.dag_token]
        task = dag.task_dict[job.task_id]
        run = self._run_of(job.run_bytes)
        key = TaskKey(dag.dag_id, run.run_id, task.task_id, job.map_index)
        log = TaskLog(self.task_data, key, job.try_number)
        context = TaskContext(
            dag,
            task,
            run,
            job.try_number,
            self.task_data,
            log,
            job.xcom_max_bytes,
            self.metrics,
            children_in_own_group=False,
            map_index=job.map_index,
            map_values=job.map_values,
            credentials=self.credentials,
        )
        handler = HANDLERS.get(task.type)
        try:
            with _limits(task.memory_limit, task.cpu_time_limit):
                if handler is None:
                    raise TaskFailed(f"no handler for task type '{task.type}'")
                result = handler(context)
            return "success", None, result.follow, result.poke_ok
        except TaskFailed as exc:
            return "failed", str(exc), None, True
        except MemoryError:
            limit = task.memory_limit
            named = f"memory_limit {format_size(limit)} exceeded" if limit else "out of memory"
            if limit:
                self.metrics.counter("task.killed", reason="limit")
            log.info(f"MemoryError: {named}")
            return "failed", f"{named} (MemoryError)", None, True
        except BaseException as exc:  # user code: even SystemExit fails only this try
            log.write(traceback.format_exc())
            return "failed", f"{type(exc).__name__}: {exc}", None, True
        finally:
            log.close()


class _limits:
    """Lower the soft limits of this process for one try and restore them afterwards (the
    hard limits stay, so a later try can have a higher limit or none)."""

    def __init__(self, memory: int | None, cpu_seconds: float | None) -> None:
        self.memory, self.cpu_seconds = memory, cpu_seconds
        self.saved: list[tuple[int, tuple[int, int]]] = []

    def __enter__(self) -> None:
        if self.memory is not None:
            self._lower(resource.RLIMIT_AS, self.memory)
        if self.cpu_seconds is not None:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            used = usage.ru_utime + usage.ru_stime
            self._lower(resource.RLIMIT_CPU, int(used + self.cpu_seconds + 0.999))

    def _lower(self, which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        self.saved.append((which, (soft, hard)))
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard))

    def __exit__(self, *exc: object) -> None:
        for which, limits in reversed(self.saved):
            resource.setrlimit(which, limits)


if __name__ == "__main__":  # ``executor: process``: one try in a fresh interpreter
    sys.exit(run_worker(int(sys.argv[1]), int(sys.argv[2]), one_shot=True))
