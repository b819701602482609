"""API representations of store values (the shapes the OpenAPI document describes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_core.model import DagRun, TaskInstance, iso
from pipeline_core.store.types import Pool


def run_dict(run: DagRun) -> dict[str, Any]:
    return {
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "state": run.state.value,
        "run_type": run.run_type,
        "logical_date": iso(run.logical_date),
        "conf": dict(run.conf),
        "note": run.note,
        "queued_at": iso(run.queued_at),
        "start_date": iso(run.start_date),
        "end_date": iso(run.end_date),
        "duration_ms": run.duration_ms,
        "priority": run.priority,
        "dag_version": run.dag_version,
    }


def task_instance_dict(ti: TaskInstance) -> dict[str, Any]:
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "map_index": ti.map_index,
        "state": ti.state.value,
        "try_number": ti.try_number,
        "max_tries": ti.max_tries,
        "start_date": iso(ti.start_date),
        "end_date": iso(ti.end_date),
        "duration_ms": ti.duration_ms,
        "pool": ti.pool,
        "priority_weight": ti.priority_weight,
        "error": ti.error,
    }


def with_mapped(
    tis: Sequence[TaskInstance], mapped: Mapping[str, Mapping[str, int]]
) -> list[dict[str, Any]]:
    """Task instances as answered, a mapped task's with its instances' counts by state."""
    return [
        {**task_instance_dict(t), "mapped": {"count": sum(s.values()), "states": dict(s)}}
        if (s := mapped.get(t.task_id)) is not None
        else task_instance_dict(t)
        for t in tis
    ]


def pool_dict(pool: Pool, running: int, queued: int) -> dict[str, Any]:
    return {
        "name": pool.name,
        "slots": pool.slots,
        "description": pool.description,
        "rate": pool.rate,
        "burst": pool.burst,
        "running_slots": running,
        "queued_slots": queued,
        "open_slots": max(0, pool.slots - running),
    }
