"""A real HTTP client whose every JSON response is validated against ``/openapi.json``."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from pipeline_core.api.routes.builder import api_document as document

OPEN_CLIENTS: list[Client] = []
DOC = document()
_TEMPLATES = [
    (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "/?$"), path) for path in DOC["paths"]
]


def response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    plain = path.split("?", maxsplit=1)[0]
    for pattern, template in _TEMPLATES:
        if pattern.match(plain):
            operation = DOC["paths"][template].get(method.lower())
            if operation is None:
                return None
            answer = operation["responses"].get(str(status))
            assert answer is not None, f"{method} {template} documents no {status} response"
            return answer.get("content", {}).get("application/json", {}).get("schema")
    return None


def serve(store: Any, **options: Any) -> Any:
    """An ``APIServer`` on an ephemeral port, started."""
    from pipeline_core.api.server import APIServer
    from pipeline_core.api.types import APIServerOptions

    return APIServer(APIServerOptions(store=store, port=0, **options)).start()


@pytest.fixture
def server(store: Any) -> Iterator[Any]:
    """The server of a test module's ``store`` fixture, with default options."""
    started = serve(store)
    yield started
    started.stop()


def validate(method: str, path: str, status: int, body: Any) -> None:
    schema = response_schema(method, path, status)
    if schema is None:
        if status >= 400:  # unknown routes still answer with the error envelope
            schema = {"$ref": "#/components/schemas/Error"}
        else:
            return
    jsonschema.validate(body, {**schema, "components": DOC["components"]})


class Client:
    def __init__(self, port: int, token: str | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        self.token = token
        OPEN_CLIENTS.append(self)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ):  # type: ignore[no-untyped-def]
        sent, data = outgoing(self.token, body, headers, raw)
        self.connection.request(method, path, body=data, headers=sent)
        response = self.connection.getresponse()
        content_type = response.getheader("Content-Type") or ""
        parsed = checked(method, path, response.status, content_type, response.read())
        return response.status, dict(response.getheaders()), parsed


def outgoing(
    token: str | None, body: object, headers: dict[str, str] | None, raw: bytes | None
) -> tuple[dict[str, str], bytes | None]:
    """The headers and bytes a test request sends: ``body`` as JSON, or ``raw`` as given."""
    sent = dict(headers or {})
    if token:
        sent.setdefault("Authorization", f"Bearer {token}")
    if body is None:
        return sent, raw
    sent.setdefault("Content-Type", "application/json")
    return sent, json.dumps(body).encode()


def checked(method: str, path: str, status: int, content_type: str, payload: bytes) -> Any:
    """The answer's body, parsed when it is JSON and then validated against the document."""
    if not payload or not content_type.startswith("application/json"):
        return payload
    parsed = json.loads(payload)
    if isinstance(parsed, dict):
        validate(method, path, status, parsed)
    return parsed


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().connection.close()


class SSEClient:
    """Reads a text/event-stream response message by message (real socket, real HTTP)."""

    def __init__(
        self,
        port: int,
        path: str = "/api/v1/events",
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
    ) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if rcvbuf is not None:
            import socket

            self.connection.sock = socket.socket()
            self.connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.connection.sock.settimeout(10)
            self.connection.sock.connect(("127.0.0.1", port))
        self.connection.request("GET", path, headers=headers or {})
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())

    def message(self) -> dict[str, str] | None:
        """The next message as its fields (comments under ``comment``); None at the end."""
        fields: dict[str, str] = {}
        while True:
            line = self.response.readline()
            if not line:
                return None
            text = line.decode().rstrip("\n")
            if text == "":
                if fields:
                    return fields
                continue
            if text.startswith(":"):
                return {"comment": text[1:].strip()}
            name, _, value = text.partition(":")
            fields[name] = value.lstrip(" ")

    def events(self, count: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while len(found) < count:
            message = self.message()
            assert message is not None, f"stream ended after {len(found)} events"
            if "data" in message and "id" in message:
                found.append(
                    {
                        "id": int(message["id"]),
                        "event": message["event"],
                        **json.loads(message["data"]),
                    }
                )
        return found

    def drain(self) -> int:
        """Read until the server ends the stream; the number of events received."""
        count = 0
        try:
            while (message := self.message()) is not None:
                count += "id" in message
        except (ConnectionResetError, http.client.IncompleteRead):
            pass
        return count

    def close(self) -> None:
        self.response.close()
        self.connection.close()


def start_pair(folder: Any, db: str) -> tuple[Any, Any, int]:
    """``pipeline-core scheduler`` and ``pipeline-core api`` on one database, as two processes;
    returns both and the API's port once it listens."""
    import subprocess

    from tests.conftest import pipeline_core_process

    scheduler = pipeline_core_process(
        "scheduler",
        "--dags-folder",
        str(folder),
        "--db",
        db,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = pipeline_core_process(
        "api", "--db", db, "--port", "0", stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return scheduler, api, api_port(api)


def api_port(process: Any) -> int:
    """The port a ``serve`` or ``api`` process (stdout piped) says it listens on."""
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        assert line, "the API process ended early"
        if "API on http://" in line:
            return int(line.rsplit(":", 1)[1].split("/")[0])


def stop_pair(scheduler: Any, api: Any) -> None:
    for process in (api, scheduler):
        process.terminate()
    api.communicate(timeout=30)
    scheduler.wait(timeout=30)


@pytest.fixture(scope="module")
def module_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one-process deployment, shared by a module whose tests do not interfere."""
    from tests import fixtures
    from tests.api.engine_system import System

    fixtures.reset()
    created = System(tmp_path_factory.mktemp("system"))
    yield created
    created.close()


@pytest.fixture(params=["one-process", "api-beside-scheduler-on-postgres"])
def system(request, tmp_path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The API over a real engine: in one process on SQLite, or an API-only server on
    PostgreSQL beside an engine process (tests/api/engine_system.py)."""
    from tests import fixtures
    from tests.api.engine_system import System

    fixtures.reset()
    split = request.param != "one-process"
    created = System(tmp_path, request.getfixturevalue("pg_url") if split else None)
    yield created
    created.close()
