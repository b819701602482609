"""The LISTEN side of PostgreSQL: one connection per store that hears every commit's
``NOTIFY`` and wakes the waiters of new events."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pipeline_core.errors import ConfigurationError
from pipeline_core.store.seq_waiter import SeqWaiter

try:
    import psycopg
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg = None  # type: ignore[assignment]

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class Listener(SeqWaiter):
    """A thread holding one LISTEN connection; tracks the highest ``seq`` announced. A lost
    connection is opened again (waiters meanwhile fall back to their timeouts, and every
    ``wait_for_events`` reads the counter first, so nothing announced meanwhile is missed)."""

    def __init__(self, conninfo: str, channel: str) -> None:
        super().__init__(0)
        self._conninfo = conninfo
        self._channel = channel
        self._stopping = False
        self._connection: Any = self._listen()
        self._thread = threading.Thread(target=self._loop, name="pg-event-listener", daemon=True)
        self._thread.start()

    def _listen(self) -> Any:
        connection = psycopg.Connection.connect(self._conninfo, autocommit=True)
        connection.execute(f'LISTEN "{self._channel}"')
        return connection

    def _loop(self) -> None:
        while not self._stopping:
            try:
                for notify in self._connection.notifies(timeout=0.5):
                    self.seen(int(notify.payload))
            except psycopg.Error:
                if self._stopping:
                    break
                self._reconnect()
        with contextlib.suppress(Exception):
            self._connection.close()

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        delay = 0.1
        while not self._stopping:
            try:
                self._connection = self._listen()
                return
            except psycopg.Error:
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def stop(self) -> None:
        """Wake every wait at once; the thread closes its connection within its next poll
        (half a second), on its own."""
        self._stopping = True
        self.close()


def split_schema(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    schema = next((v for k, v in query if k == "schema"), None)
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(f"invalid schema name {schema!r} in the database URL")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=rest)), schema


def cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
