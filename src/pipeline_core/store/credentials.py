"""The store's part for variables and connections (``store.credentials``): the protocol
every backend implements. Secret values and passwords are sealed at rest."""

from __future__ import annotations

from typing import Any, Protocol

from pipeline_core.credentials.cipher import Cipher
from pipeline_core.credentials.connections import Connection
from pipeline_core.store.types import Page, StoredConnection, Variable


class CredentialStore(Protocol):
    cipher: Cipher | None

    def set_variable(
        self, key: str, value: Any, *, secret: bool | None = None,
        description: str | None = None, expected_version: int | None = None,
    ) -> Variable:  # fmt: skip
        """Create or replace; ``Conflict`` when ``expected_version`` is not the current."""
        ...

    def get_variable(self, key: str) -> Variable: ...

    def list_variables(self, *, limit: int = 100, offset: int = 0) -> Page[Variable]: ...

    def delete_variable(self, key: str) -> None: ...

    def set_connection(
        self, connection: Connection, *, description: str | None = None,
        expected_version: int | None = None,
    ) -> StoredConnection: ...  # fmt: skip

    def get_connection(self, conn_id: str) -> StoredConnection: ...

    def list_connections(self, *, limit: int = 100, offset: int = 0) -> Page[StoredConnection]: ...

    def delete_connection(self, conn_id: str) -> None: ...

    def secret_values(self) -> list[str]:
        """The plain text of every stored secret (for masking)."""
        ...

    def check_key(self) -> int:
        """How many sealed values; ``ConfigurationError`` if the key cannot open them."""
        ...

    def rotate_key(self) -> int:
        """Seal every secret again under the first key; how many."""
        ...
