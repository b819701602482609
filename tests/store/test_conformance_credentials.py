"""Variables and connections on every backend: values as JSON, secrets and passwords sealed
at rest (never in the clear in the database), versions for concurrent writers, a missing or
wrong key refused clearly, and a key rotated."""

from __future__ import annotations

import pytest

from pipeline_core.credentials.cipher import Cipher
from pipeline_core.credentials.connections import Connection
from pipeline_core.errors import ConfigurationError, Conflict, InvalidRequest, NotFound

PLAIN = "s3cr3t-Ω-value"


def raw_rows(store) -> str:  # type: ignore[no-untyped-def]
    def read(tx):  # type: ignore[no-untyped-def]
        return str(tx.rows("SELECT * FROM variables")) + str(tx.rows("SELECT * FROM connections"))

    return store.sql.read(read)  # type: ignore[no-any-return]


@pytest.fixture
def keyed(store):  # type: ignore[no-untyped-def]
    store.credentials.cipher = Cipher([Cipher.new_key()])
    return store


def test_variables_hold_json_and_secrets_are_sealed(keyed) -> None:  # type: ignore[no-untyped-def]
    credentials = keyed.credentials
    first = credentials.set_variable("region", {"name": "eu", "zones": [1, 2]}, description="x")
    assert (first.version, first.is_secret) == (1, False)
    credentials.set_variable("api_token", PLAIN)  # a secret by its name
    credentials.set_variable("plain_but_secret", [PLAIN], secret=True)
    assert credentials.get_variable("api_token").value == PLAIN
    assert credentials.get_variable("plain_but_secret").value == [PLAIN]
    assert credentials.get_variable("region").value == {"name": "eu", "zones": [1, 2]}
    assert PLAIN not in raw_rows(keyed) and "s3cr3t" not in raw_rows(keyed)
    page = credentials.list_variables(limit=2)
    assert [v.key for v in page.items] == ["api_token", "plain_but_secret"] and page.total == 3
    credentials.delete_variable("region")
    with pytest.raises(NotFound):
        credentials.get_variable("region")
    with pytest.raises(InvalidRequest):
        credentials.set_variable("bad key", 1)


def test_a_write_naming_an_old_version_loses(keyed) -> None:  # type: ignore[no-untyped-def]
    credentials = keyed.credentials
    credentials.set_variable("n", 1)
    assert credentials.set_variable("n", 2, expected_version=1).version == 2
    with pytest.raises(Conflict, match="version 2, not 1"):
        credentials.set_variable("n", 3, expected_version=1)
    assert credentials.get_variable("n").value == 2


def test_connection_passwords_are_sealed(keyed) -> None:  # type: ignore[no-untyped-def]
    conn = Connection.from_uri("warehouse", f"postgresql://etl:{PLAIN}@db:5432/w?sslmode=require")
    stored = keyed.credentials.set_connection(conn, description="the warehouse")
    assert stored.version == 1
    assert keyed.credentials.get_connection("warehouse").connection == conn
    assert "s3cr3t" not in raw_rows(keyed)
    assert [c.connection.conn_id for c in keyed.credentials.list_connections().items] == [
        "warehouse"
    ]


def test_no_key_or_a_wrong_key_is_refused_clearly(store) -> None:  # type: ignore[no-untyped-def]
    credentials = store.credentials
    credentials.cipher = None
    credentials.set_variable("region", "eu")  # not a secret: no key needed
    with pytest.raises(ConfigurationError, match="PIPELINE_CORE_SECRET_KEY"):
        credentials.set_variable("db_password", PLAIN)
    assert credentials.check_key() == 0
    credentials.cipher = Cipher([Cipher.new_key()])
    credentials.set_variable("db_password", PLAIN)
    credentials.cipher = Cipher([Cipher.new_key()])
    with pytest.raises(ConfigurationError, match="does not open"):
        credentials.check_key()
    credentials.cipher = None
    with pytest.raises(ConfigurationError, match="no key is set"):
        credentials.get_variable("db_password")


def test_a_key_is_rotated(keyed) -> None:  # type: ignore[no-untyped-def]
    credentials = keyed.credentials
    old = credentials.cipher
    credentials.set_variable("db_password", PLAIN)
    credentials.set_connection(Connection("c", "http", password=PLAIN))
    new = Cipher([Cipher.new_key()])
    credentials.cipher = new.then(old)
    assert credentials.rotate_key() == 2
    credentials.cipher = new
    assert credentials.get_variable("db_password").value == PLAIN
    assert credentials.get_connection("c").connection.password == PLAIN
