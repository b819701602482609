"""Variables and connections through the API, in-process and checked against the OpenAPI
document: secrets answered masked and never stored in the clear, versions with If-Match, a
missing key refused with the variable to set, bad URIs and bodies refused, 10,000 paged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.credentials.cipher import Cipher
from pipeline_core.store import open_store
from tests.api.conftest import serve
from tests.api.inprocess import AppClient

SECRET = "hunter2-very-secret"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[AppClient, Any]]:
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    store.credentials.cipher = None
    server = serve(store)
    yield AppClient(server), store
    server.stop()
    store.close()


def call(
    app: AppClient, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any, Any]:
    status, answered, data = app.request(method, path, body, headers=headers or None)
    return status, answered, data


def test_variables_are_set_read_versioned_and_deleted(app: tuple[AppClient, Any]) -> None:
    client, _ = app
    status, headers, body = call(
        client, "PUT", "/api/v1/variables/region", {"value": {"name": "eu"}}
    )
    assert status == 200 and body["data"]["version"] == 1 and headers["ETag"] == '"1"'
    assert call(client, "GET", "/api/v1/variables/region")[2]["data"]["value"] == {"name": "eu"}
    status, _, body = call(
        client, "PUT", "/api/v1/variables/region", {"value": 2}, **{"If-Match": '"1"'}
    )
    assert status == 200 and body["data"]["version"] == 2
    status, _, body = call(
        client, "PUT", "/api/v1/variables/region", {"value": 3}, **{"If-Match": '"1"'}
    )
    assert status == 409 and "version 2, not 1" in body["error"]["message"]
    status, _, body = call(
        client, "PUT", "/api/v1/variables/region", {"value": 3}, **{"If-Match": "x"}
    )
    assert status == 400
    assert call(client, "DELETE", "/api/v1/variables/region")[0] == 200
    assert call(client, "GET", "/api/v1/variables/region")[0] == 404


def test_secrets_need_a_key_and_are_answered_masked(app: tuple[AppClient, Any]) -> None:
    client, store = app
    status, _, body = call(client, "PUT", "/api/v1/variables/db_password", {"value": SECRET})
    assert status == 503 and "PIPELINE_CORE_SECRET_KEY" in body["error"]["message"]
    store.credentials.cipher = Cipher([Cipher.new_key()])
    status, _, body = call(client, "PUT", "/api/v1/variables/db_password", {"value": SECRET})
    assert status == 200 and body["data"]["value"] == "***" and body["data"]["is_secret"]
    status, _, body = call(
        client, "PUT", "/api/v1/variables/plain", {"value": SECRET, "secret": True}
    )
    assert body["data"]["value"] == "***"
    listed = call(client, "GET", "/api/v1/variables")[2]["data"]
    assert SECRET not in str(listed) and SECRET not in str(
        call(client, "GET", "/api/v1/variables/plain")
    )
    assert store.credentials.get_variable("db_password").value == SECRET
    uri = f"postgresql://etl:{SECRET}@db:5432/warehouse?sslmode=require"
    status, _, body = call(client, "PUT", "/api/v1/connections/warehouse", {"uri": uri})
    assert status == 200 and body["data"]["password"] == "***" and body["data"]["port"] == 5432
    got = call(client, "GET", "/api/v1/connections/warehouse")[2]["data"]
    assert got["extra"] == {"sslmode": "require"} and SECRET not in str(got)
    status, _, body = call(client, "PUT", "/api/v1/connections/api",
                           {"conn_type": "http", "host": "api.example.com", "port": 443})  # fmt: skip
    assert status == 200 and body["data"]["password"] is None
    raw = (Path(store.url.removeprefix("sqlite:///"))).read_bytes()
    assert SECRET.encode() not in raw


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"uri": "no-scheme"}, "'uri' must be text matching"),
        ({"uri": "postgresql://h:99999/x"}, "does not parse"),
        ({"uri": "http://h", "host": "x"}, "unknown field(s) host"),
        ({"host": "x"}, "fields with conn_type (no uri)"),
        ({"conn_type": "1bad"}, "'conn_type' must be text matching"),
        ({"conn_type": "http", "port": 0}, "port"),
        ({"conn_type": "http", "nope": 1}, "nope"),
    ],
)
def test_bad_connections_are_refused(app: tuple[AppClient, Any], body: Any, message: str) -> None:
    client, _ = app
    status, _, answer = call(client, "PUT", "/api/v1/connections/c", body)
    assert status == 400 and message in answer["error"]["message"]


def test_ten_thousand_variables_page(app: tuple[AppClient, Any]) -> None:
    client, store = app
    rows = [(f"v{i:05d}", str(i), False, None, 1, "2026-01-01T00:00:00Z") for i in range(10_000)]
    store.sql.write(lambda tx, _: tx.many(
        "INSERT INTO variables (key, value, is_secret, description, version, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)", rows))  # fmt: skip
    status, _, body = call(client, "GET", "/api/v1/variables?limit=1000&offset=9500")
    assert status == 200 and body["meta"]["total"] == 10_000 and len(body["data"]) == 500
    assert body["data"][0]["key"] == "v09500" and body["data"][0]["value"] == 9500
