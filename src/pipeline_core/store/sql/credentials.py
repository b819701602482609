"""Variables and connections in SQL, their secrets sealed at rest.

A variable is a JSON value under a key; one marked secret (or whose key names a secret) is
stored sealed with the ``Cipher``. A connection's password is always sealed. Without a key,
storing a secret is refused (``ConfigurationError``) rather than written in the clear. Each
row has a ``version`` that every write raises by one: a write may name the version it
expects (``If-Match``), and a concurrent one that lost is a ``Conflict``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_core.credentials.cipher import KEY_ENV, Cipher
from pipeline_core.credentials.connections import ID, Connection, is_secret_key, secret_leaves
from pipeline_core.errors import ConfigurationError, Conflict, InvalidRequest, NotFound
from pipeline_core.model import iso
from pipeline_core.store.sql.common import to_json
from pipeline_core.store.sql.core import Pending, Sql
from pipeline_core.store.sql.tx import Tx, parse_ts
from pipeline_core.store.types import Page, StoredConnection, Variable

CONN_COLUMNS = ("conn_id, conn_type, host, port, login, password, schema_name, extra, "
                "description, version, updated_at")  # fmt: skip


class CredentialsSql:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql
        self._cipher: Cipher | None = None
        self._cipher_read = False

    @property
    def cipher(self) -> Cipher | None:
        """The key of the environment (read once)."""
        if not self._cipher_read:
            self._cipher, self._cipher_read = Cipher.from_environ(os.environ), True
        return self._cipher

    @cipher.setter
    def cipher(self, cipher: Cipher | None) -> None:
        self._cipher, self._cipher_read = cipher, True

    # --- variables ----------------------------------------------------------------------
    def set_variable(
        self, key: str, value: Any, *, secret: bool | None = None,
        description: str | None = None, expected_version: int | None = None,
    ) -> Variable:  # fmt: skip
        if not ID.fullmatch(key):
            raise InvalidRequest(
                f"invalid variable key {key!r:.60}: use letters, digits, '_', '-', '.'"
            )
        text = to_json(value, f"variable '{key}'")
        is_secret = is_secret_key(key) if secret is None else secret or is_secret_key(key)
        stored = self._seal(text) if is_secret else text

        def work(tx: Tx, pending: Pending) -> Variable:
            row = tx.one("SELECT version FROM variables WHERE key = ?", (key,))
            version = _next_version(row, expected_version, f"variable '{key}'")
            now = self.sql.clock()
            tx.run("DELETE FROM variables WHERE key = ?", (key,))
            tx.run(
                "INSERT INTO variables (key, value, is_secret, description, version, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, stored, is_secret, description, version, iso(now)),
            )
            return Variable(key, value, is_secret, description, version, now)

        result: Variable = self.sql.write(work)
        return result

    def get_variable(self, key: str) -> Variable:
        row = self.sql.read(lambda tx: tx.one(
            "SELECT key, value, is_secret, description, version, updated_at FROM variables "
            "WHERE key = ?", (key,)))  # fmt: skip
        if row is None:
            raise NotFound(f"no variable '{key}'")
        return self._variable(row)

    def list_variables(self, *, limit: int = 100, offset: int = 0) -> Page[Variable]:
        def read(tx: Tx) -> Page[Variable]:
            total = int(tx.scalar("SELECT COUNT(*) FROM variables"))
            rows = tx.rows(
                "SELECT key, value, is_secret, description, version, updated_at FROM variables "
                "ORDER BY key LIMIT ? OFFSET ?", (limit, offset))  # fmt: skip
            return Page([self._variable(r) for r in rows], total, limit, offset)

        page: Page[Variable] = self.sql.read(read)
        return page

    def delete_variable(self, key: str) -> None:
        deleted = self.sql.write(
            lambda tx, _: tx.run("DELETE FROM variables WHERE key = ?", (key,))
        )
        if not deleted:
            raise NotFound(f"no variable '{key}'")

    # --- connections --------------------------------------------------------------------
    def set_connection(
        self, connection: Connection, *, description: str | None = None,
        expected_version: int | None = None,
    ) -> StoredConnection:  # fmt: skip
        c = connection
        password = self._seal(c.password) if c.password is not None else None
        extra = to_json(dict(c.extra), "extra")

        def work(tx: Tx, pending: Pending) -> StoredConnection:
            row = tx.one("SELECT version FROM connections WHERE conn_id = ?", (c.conn_id,))
            version = _next_version(row, expected_version, f"connection '{c.conn_id}'")
            now = self.sql.clock()
            tx.run("DELETE FROM connections WHERE conn_id = ?", (c.conn_id,))
            tx.run(
                f"INSERT INTO connections ({CONN_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (c.conn_id, c.conn_type, c.host, c.port, c.login, password, c.schema, extra,
                 description, version, iso(now)),
            )  # fmt: skip
            return StoredConnection(c, description, version, now)

        result: StoredConnection = self.sql.write(work)
        return result

    def get_connection(self, conn_id: str) -> StoredConnection:
        row = self.sql.read(lambda tx: tx.one(
            f"SELECT {CONN_COLUMNS} FROM connections WHERE conn_id = ?", (conn_id,)))  # fmt: skip
        if row is None:
            raise NotFound(f"no connection '{conn_id}'")
        return self._connection(row)

    def list_connections(self, *, limit: int = 100, offset: int = 0) -> Page[StoredConnection]:
        def read(tx: Tx) -> Page[StoredConnection]:
            total = int(tx.scalar("SELECT COUNT(*) FROM connections"))
            rows = tx.rows(f"SELECT {CONN_COLUMNS} FROM connections ORDER BY conn_id "
                           "LIMIT ? OFFSET ?", (limit, offset))  # fmt: skip
            return Page([self._connection(r) for r in rows], total, limit, offset)

        page: Page[StoredConnection] = self.sql.read(read)
        return page

    def delete_connection(self, conn_id: str) -> None:
        deleted = self.sql.write(
            lambda tx, _: tx.run("DELETE FROM connections WHERE conn_id = ?", (conn_id,))
        )
        if not deleted:
            raise NotFound(f"no connection '{conn_id}'")

    def secret_values(self) -> list[str]:
        """The plain text of every secret stored: each string (and number) inside a secret
        variable's value, and every connection password — what a masker must know."""

        def read(tx: Tx) -> tuple[list[Any], list[Any]]:
            variables = tx.rows("SELECT value FROM variables WHERE is_secret")
            passwords = tx.rows("SELECT password FROM connections WHERE password IS NOT NULL")
            return variables, passwords

        variables, passwords = self.sql.read(read)
        found = [self._open(row[0]) for row in passwords]
        for (sealed,) in variables:
            found += secret_leaves(json.loads(self._open(sealed)))
        return found

    # --- keys ------------------------------------------------------------------------------
    def check_key(self) -> int:
        """How many sealed values there are; ``ConfigurationError`` when some exist and the
        key is missing or does not open them (a start-up check)."""
        sealed = self._sealed()
        for _, value in sealed[:1]:
            self._open(value)
        return len(sealed)

    def rotate_key(self) -> int:
        """Seal every stored secret again under the first key; returns how many."""
        cipher = self.cipher
        if cipher is None:
            raise ConfigurationError(f"no secret key: set {KEY_ENV}")

        def work(tx: Tx, pending: Pending) -> int:
            rows = tx.rows("SELECT key, value FROM variables WHERE is_secret")
            for key, value in rows:
                tx.run("UPDATE variables SET value = ? WHERE key = ?", (cipher.reseal(value), key))
            conns = tx.rows("SELECT conn_id, password FROM connections WHERE password IS NOT NULL")
            for conn_id, value in conns:
                tx.run("UPDATE connections SET password = ? WHERE conn_id = ?",
                       (cipher.reseal(value), conn_id))  # fmt: skip
            return len(rows) + len(conns)

        count: int = self.sql.write(work)
        return count

    # --- helpers -----------------------------------------------------------------------------
    def _sealed(self) -> list[tuple[str, str]]:
        def read(tx: Tx) -> list[tuple[str, str]]:
            found = [(k, v) for k, v in tx.rows("SELECT key, value FROM variables WHERE is_secret")]
            passwords = "SELECT conn_id, password FROM connections WHERE password IS NOT NULL"
            found += [(c, p) for c, p in tx.rows(passwords)]
            return found

        sealed: list[tuple[str, str]] = self.sql.read(read)
        return sealed

    def _seal(self, plain: str) -> str:
        cipher = self.cipher
        if cipher is None:
            raise ConfigurationError(
                f"no secret key to seal secrets with: set {KEY_ENV} (make one with "
                "pipeline-core secrets new-key)"
            )
        return cipher.seal(plain)

    def _open(self, sealed: str) -> str:
        cipher = self.cipher
        if cipher is None:
            raise ConfigurationError(f"secrets are stored sealed but no key is set: set {KEY_ENV}")
        return cipher.open(sealed)

    def _variable(self, row: Sequence[Any]) -> Variable:
        text = self._open(row[1]) if row[2] else row[1]
        return Variable(
            row[0], json.loads(text), bool(row[2]), row[3], int(row[4]), parse_ts(row[5])
        )

    def _connection(self, row: Sequence[Any]) -> StoredConnection:
        password = self._open(row[5]) if row[5] is not None else None
        extra: Mapping[str, Any] = json.loads(row[7]) if row[7] else {}
        port = None if row[3] is None else int(row[3])
        conn = Connection(row[0], row[1], row[2], port, row[4], password, row[6], extra)
        return StoredConnection(conn, row[8], int(row[9]), parse_ts(row[10]))


def _next_version(row: Sequence[Any] | None, expected: int | None, what: str) -> int:
    current = int(row[0]) if row is not None else 0
    if expected is not None and expected != current:
        raise Conflict(f"{what} is at version {current}, not {expected} (another write came first)")
    return current + 1
