"""Logic every backend shares: JSON checks, log clipping, error messages, DAG and pool events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline_core.errors import InvalidRequest, NotFound
from pipeline_core.model import TaskKey, iso
from pipeline_core.store.types import DagRecord, Pool

TRUNCATION_MARKER = "\n[log truncated: the cap for one try was reached]\n"


def to_json(value: Any, what: str) -> str:
    """Compact JSON text of ``value``; ``InvalidRequest`` naming ``what`` if it is not JSON."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"{what} is not JSON-serialisable: {exc}") from None


def clip_log(text: str, size: int, cap: int) -> tuple[str, bool]:
    """What of ``text`` fits a log of ``size`` bytes under ``cap``; True when it was cut."""
    data = text.encode("utf-8")
    room = cap - size
    if len(data) <= room:
        return text, False
    kept = data[: max(0, room)].decode("utf-8", errors="ignore")
    return kept + TRUNCATION_MARKER, True


def task_not_found(key: TaskKey) -> NotFound:
    where = f"in run '{key.run_id}' of DAG '{key.dag_id}'"
    if key.map_index >= 0:
        return NotFound(f"task '{key.task_id}' {where} has no instance map_index {key.map_index}")
    return NotFound(f"no task '{key.task_id}' {where}")


def run_not_found(dag_id: str, run_id: str) -> NotFound:
    return NotFound(f"no run '{run_id}' of DAG '{dag_id}'")


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def dag_event(
    record: DagRecord, change: str, now: datetime
) -> tuple[str, dict[str, Any], str, None, None]:
    payload = {
        "dag_id": record.dag_id,
        "change": change,
        "is_paused": record.is_paused,
        "is_active": record.is_active,
        "timestamp": iso(now),
    }
    return ("dag.updated", payload, record.dag_id, None, None)


def pool_event(
    pool: Pool, change: str, now: datetime
) -> tuple[str, dict[str, Any], None, None, None]:
    payload = {
        "pool": pool.name,
        "change": change,
        "slots": pool.slots,
        "description": pool.description,
        "rate": pool.rate,
        "burst": pool.burst,
        "timestamp": iso(now),
    }
    return ("pool.updated", payload, None, None, None)
