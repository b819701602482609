"""What every part of ``Client`` stands on: its transport and the envelope's ``data``."""

from __future__ import annotations

from typing import Any, Self
from urllib.parse import quote

from pipeline_core.client.transport import Transport

Data = dict[str, Any]


def quoted(value: str) -> str:
    """A path segment."""
    return quote(value, safe="")


class ClientBase:
    """``base_url`` of the server, an optional bearer ``token``, ``timeout`` seconds per
    request, and ``retries`` with exponential ``backoff`` (seconds) where a retry is safe."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.transport = Transport(base_url, token, timeout, retries, backoff)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _one(self, method: str, path: str, **options: Any) -> Data:
        data: Data = self.transport.request(method, path, **options).body["data"]
        return data

    def _many(self, method: str, path: str, **options: Any) -> list[Data]:
        data: list[Data] = self.transport.request(method, path, **options).body["data"]
        return data
