"""What ``Client`` and its resources stand on: one transport, and the envelope's ``data``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pipeline_core.client.transport import Transport

Data = dict[str, Any]


def quoted(value: str) -> str:
    """A path segment."""
    return quote(value, safe="")


class Resource:
    """A part of the API reached over the client's transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def _one(self, method: str, path: str, **options: Any) -> Data:
        data: Data = self.transport.request(method, path, **options).body["data"]
        return data

    def _many(self, method: str, path: str, **options: Any) -> list[Data]:
        data: list[Data] = self.transport.request(method, path, **options).body["data"]
        return data


def run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v1/dags/{quoted(dag_id)}/runs/{quoted(run_id)}"
