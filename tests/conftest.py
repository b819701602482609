"""Shared fixtures: stores of every backend, and the PostgreSQL server check."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_DSN = os.environ.get("PIPELINE_CORE_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    """The servers the tests start keep their parsed DAG files in a folder of this run's
    (not in the user's cache)."""
    os.environ["PIPELINE_CORE_CACHE_DIR"] = tempfile.mkdtemp(prefix="pipeline-core-cache-")


def postgres_or_skip() -> str:
    """The DSN of a reachable PostgreSQL; skips (fails in CI) when none answers."""
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as exc:
        message = f"PostgreSQL at {PG_DSN} is not reachable ({exc}); set PIPELINE_CORE_PG_DSN"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return PG_DSN


REDIS_URL = os.environ.get("PIPELINE_CORE_REDIS_URL", "redis://127.0.0.1:6379/11")
RABBITMQ_URL = os.environ.get("PIPELINE_CORE_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUES = ("pipeline-core", "pipeline-core.default_pool", "pipeline-core.heavy")


def needs_tool(tool: Path, what: str) -> None:
    """A test tool that ``make test`` installs: a failure in CI, a skip elsewhere."""
    if tool.exists():
        return
    message = f"{what} is not installed ({tool}); `make test` installs it"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def broker_or_skip(url: str) -> str:
    """``url`` once it answers, with the test queues emptied of other tests' leftovers."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
            if url.startswith("redis"):
                connection.default_channel.client.flushdb()
            else:
                for queue in QUEUES:
                    channel = connection.channel()  # a purge of a missing queue closes it
                    with contextlib.suppress(Exception):
                        channel.queue_purge(queue)
    except Exception as exc:
        message = f"broker {url} is not reachable ({exc})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL to a fresh, private schema on the test server, dropped afterwards."""
    dsn = postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in dsn else "?"
    yield f"{dsn}{separator}schema={schema}"
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def make_store(kind: str, tmp_path, request):  # type: ignore[no-untyped-def]
    from pipeline_core.store import open_store

    if kind == "memory":
        return open_store("memory://")
    if kind == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'store.db'}")
    return open_store(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path):  # type: ignore[no-untyped-def]
    """One store of each backend; the conformance suite runs against all three."""
    created = make_store(request.param, tmp_path, request)
    yield created
    created.close()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request, tmp_path):  # type: ignore[no-untyped-def]
    created = make_store(request.param, tmp_path, request)
    yield created
    created.close()


def poll_until(
    predicate: Callable[[], object], timeout: float = 20, interval: float = 0.02
) -> None:
    """For conditions seen from outside (another process, over HTTP) that no event announces."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(interval)


def process_alive(pid: int | str) -> bool:
    """Whether ``pid`` still runs. A zombie has ended (it only waits to be reaped), and a
    process may vanish between any two looks, so every read of ``/proc`` may fail."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pipeline_core_process(*args: str, **popen: Any) -> subprocess.Popen[str]:
    """``python -m pipeline_core ARGS`` as a real process that imports this checkout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline_core", *args], text=True, env=env, **popen
    )


class LoggedProcess:
    """A ``pipeline-core`` process in a session of its own, its output in ``log``."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as output:
            self.process = pipeline_core_process(
                *args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def says(self, text: str) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return text in self.log.read_text()

    def kill(self) -> None:
        """``kill -9`` of the process and its worker pool."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
