"""Connections from and to URIs, their fields for templates, and which variable keys are
secrets by name."""

from __future__ import annotations

import pytest

from pipeline_core.credentials.connections import Connection, ConnectionError_, is_secret_key


def test_a_uri_round_trips_with_its_escapes_and_extras() -> None:
    uri = "postgresql://etl%20user:p%40ss%3Aw%2Frd@db.internal:5432/ware%2Fhouse?sslmode=require&x="
    conn = Connection.from_uri("warehouse", uri)
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.password, conn.schema) == (
        "postgresql", "db.internal", 5432, "etl user", "p@ss:w/rd", "ware/house",
    )  # fmt: skip
    assert dict(conn.extra) == {"sslmode": "require", "x": ""}
    assert Connection.from_uri("warehouse", conn.to_uri()) == conn
    assert conn.value(("host",)) == "db.internal" and conn.value(("extra", "sslmode")) == "require"
    assert conn.value(("uri",)) == conn.to_uri()
    bare = Connection.from_uri("api", "https://api.example.com")
    assert (bare.login, bare.password, bare.port, bare.schema) == (None, None, None, None)
    assert Connection.from_uri("g", "google-cloud-platform://").conn_type == "google_cloud_platform"


@pytest.mark.parametrize(
    ("conn_id", "uri", "message"),
    [
        ("x", "db.internal:5432", "needs a scheme"),
        ("x", "postgresql://h:99999/db", "does not parse"),
        ("x", "postgresql://h:port/db", "does not parse"),
        ("bad id", "postgresql://h/db", "invalid connection id"),
        ("x", "1abc://h", "invalid connection type"),
    ],
)
def test_uris_that_do_not_parse_say_why(conn_id: str, uri: str, message: str) -> None:
    with pytest.raises(ConnectionError_, match=message):
        Connection.from_uri(conn_id, uri)


def test_a_template_naming_a_missing_field_says_which() -> None:
    conn = Connection("c", "http", host="h")
    for path, message in (((), "names a field"), (("nope",), "no field 'nope'"),
                          (("extra", "k"), "no extra 'k'")):  # fmt: skip
        with pytest.raises(KeyError, match=message):
            conn.value(path)


def test_secret_keys_by_name() -> None:
    assert all(map(is_secret_key, ["db_password", "API_TOKEN", "signing_key", "aws_secret"]))
    assert not any(map(is_secret_key, ["region", "bucket", "retries"]))
