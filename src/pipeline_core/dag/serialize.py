"""A DAG as plain JSON data (for the store, the API and change detection)."""

from __future__ import annotations

import hashlib
import json
import marshal
from typing import Any

from pipeline_core.dag.model import DAG, Task

#: The names Python DAG files are loaded under (``pipeline_core_dagfile_<file>_<digest>``).
DAG_FILE_MODULES = "pipeline_core_dagfile_"


def dag_to_dict(dag: DAG) -> dict[str, Any]:
    """Every field of the DAG and its tasks as JSON-safe data (callables by import path)."""
    return {
        "dag_id": dag.dag_id,
        "description": dag.description,
        "schedule": dag.schedule,
        "timezone": dag.timezone,
        "start_date": dag.start_date.isoformat() if dag.start_date else None,
        "end_date": dag.end_date.isoformat() if dag.end_date else None,
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "concurrency": dag.concurrency,
        "tags": list(dag.tags),
        "tasks": [task_to_dict(task) for task in dag.tasks],
        **_notify_fields(dag),
    }


def _notify_fields(dag: DAG) -> dict[str, Any]:
    """Rules, deadline and asset schedule, only where set: a DAG without them keeps its
    definition hash."""
    fields: dict[str, Any] = {}
    if dag.notify:
        fields["notify"] = [rule.to_dict() for rule in dag.notify]
    if dag.deadline is not None:
        fields["deadline"] = dag.deadline
        fields["deadline_action"] = dag.deadline_action
    if dag.assets is not None:
        fields["assets"] = dag.assets.to_dict()
    if dag.webhooks:
        fields["webhooks"] = [webhook.to_dict() for webhook in dag.webhooks]
    if dag.run_concurrency is not None:
        fields["concurrency_key"] = dag.run_concurrency.to_dict()
    return fields


def task_to_dict(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "type": task.type,
        "depends_on": list(task.depends_on),
        "trigger_rule": task.trigger_rule.value,
        "retries": task.retries,
        "retry_delay": task.retry_delay,
        "timeout": task.timeout,
        "pool": task.pool,
        "priority_weight": task.priority_weight,
        "config": _json_safe(dict(task.config)),
        **({"notify": [rule.to_dict() for rule in task.notify]} if task.notify else {}),
        **({"expand": _json_safe(task.expansion.to_dict())} if task.expansion else {}),
        **({"outlets": list(task.outlets)} if task.outlets else {}),
        **({"concurrency": task.concurrency_key.to_dict()} if task.concurrency_key else {}),
        **({"rate_limit": task.rate_limit.to_dict()} if task.rate_limit else {}),
    }


def definition_hash(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if callable(value):
        module = getattr(value, "__module__", None) or "?"
        name = f"{module}:{getattr(value, '__qualname__', repr(value))}"
        code = getattr(value, "__code__", None)
        if code is not None and module.startswith(DAG_FILE_MODULES):
            # A DAG file's own function: its code is part of the DAG's version.
            name += "@" + hashlib.sha256(marshal.dumps(code)).hexdigest()[:12]
        return name
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)
