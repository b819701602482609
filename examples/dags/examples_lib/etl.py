"""Task callables used by the example DAGs."""

from __future__ import annotations

import json
import random
from typing import Any


def transform(raw: str | dict[str, Any]) -> dict[str, Any]:
    """Parse the extract's JSON line and add a derived field."""
    data = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return {**data, "rows": int(data.get("rows", 0)), "doubled": int(data.get("rows", 0)) * 2}


def load(data: dict[str, Any]) -> int:
    """Pretend to load the rows; returns how many were written."""
    return int(data["rows"])


def process_partition(name: str) -> dict[str, str]:
    return {"partition": name, "status": "processed"}


def flaky() -> str:
    """Fails now and then so that retries can be seen at work."""
    if random.random() < 0.3:
        raise RuntimeError("transient failure (try again)")
    return "ok"


def list_partitions(context: Any) -> list[str]:
    """The partitions that arrived: known only when the run gets there (the run's conf
    ``count``, 12 unless given)."""
    return [f"part-{i:03d}" for i in range(int(context.conf.get("count", 12)))]


def rows_in(partition: str, table: str) -> int:
    """Pretend to load one partition into ``table``; returns its row count."""
    return 100 + sum(map(ord, partition)) % 50


def report(counts: list[int]) -> dict[str, int]:
    return {"partitions": len(counts), "rows": sum(counts)}
