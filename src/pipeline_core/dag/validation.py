"""Model-level checks of a ``DAG``: ids, edges, cycles, schedules and type-specific settings.

Returns every problem as ``(key path, message)``; callers decide how to report them. Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time
from typing import Any

from croniter import croniter

from pipeline_core.dag.expressions import ExpressionError, parse_condition
from pipeline_core.dag.graph import Graph
from pipeline_core.dag.model import (
    DAG,
    EXECUTORS,
    TASK_TYPES,
    Task,
    invalid_id_reason,
    parse_datetime,
)
from pipeline_core.dag.templates import (
    MAPPED_ROOTS,
    TemplateError,
    find_references,
    iter_strings,
)

Keys = tuple[str | int, ...]
Found = Iterator[tuple[Keys, str]]
SCHEDULE_PRESETS = {
    "@once": None,
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


def validate_dag(dag: DAG) -> list[tuple[Keys, str]]:
    """Every model-level problem of ``dag``."""
    graph = Graph.from_edges(
        (t.task_id, [u for u in t.depends_on if u != t.task_id]) for t in dag.tasks
    )
    return [*_dag_fields(dag), *_task_list(dag, graph), *_graph(dag, graph)]


def schedule_problem(schedule: str) -> str | None:
    """Why ``schedule`` is not a 5-field cron expression or preset, or ``None`` when it is."""
    if schedule in SCHEDULE_PRESETS:
        return None
    if schedule.startswith("@"):
        return f"unknown schedule preset {schedule!r} (use {', '.join(SCHEDULE_PRESETS)})"
    if len(schedule.split()) != 5:
        return (
            f"invalid schedule {schedule!r}: expected 5 cron fields (minute hour day month weekday)"
        )
    if not croniter.is_valid(schedule):
        return f"invalid cron expression {schedule!r}"
    return None


def _dag_fields(dag: DAG) -> Found:
    if dag.dag_id and (reason := invalid_id_reason(dag.dag_id)):
        yield ("dag_id",), reason
    if dag.schedule is not None and (reason := schedule_problem(dag.schedule)):
        yield ("schedule",), reason
    if dag.schedule is not None and dag.schedule != "@once" and dag.start_date is None:
        yield ("start_date",), "a scheduled DAG needs a start_date"
    if dag.start_date and dag.end_date and dag.end_date < dag.start_date:
        yield ("end_date",), "end_date is before start_date"
    if dag.max_active_runs < 1:
        yield ("max_active_runs",), f"must be ≥ 1, got {dag.max_active_runs}"
    if dag.concurrency < 1:
        yield ("concurrency",), f"must be ≥ 1, got {dag.concurrency}"


def _task_list(dag: DAG, graph: Graph) -> Found:
    seen: set[str] = set()
    for task in dag.tasks:
        keys: Keys = ("tasks", task.task_id)
        if task.task_id in seen:
            yield keys, f"duplicate task id '{task.task_id}'"
        seen.add(task.task_id)
        if reason := invalid_id_reason(task.task_id):
            yield keys, reason
        yield from _task_fields(task, keys)
        yield from _task_config(dag, graph, task, keys)


def _task_fields(task: Task, keys: Keys) -> Found:
    if task.type not in TASK_TYPES:
        yield (*keys, "type"), f"unknown task type '{task.type}' (use {', '.join(TASK_TYPES)})"
    if task.retries < 0:
        yield (*keys, "retries"), f"must be ≥ 0, got {task.retries}"
    if task.timeout is not None and task.timeout <= 0:
        yield (*keys, "timeout"), f"must be > 0, got {task.timeout}"
    if task.pool and (reason := invalid_id_reason(task.pool)):
        yield (*keys, "pool"), reason
    if task.executor is not None and task.executor not in EXECUTORS:
        yield (
            (*keys, "executor"),
            (f"unknown executor '{task.executor}' (use {', '.join(EXECUTORS)})"),
        )
    if task.cpu_time_limit is not None and task.cpu_time_limit <= 0:
        yield (*keys, "cpu_time_limit"), f"must be > 0, got {task.cpu_time_limit}"
    for limit in ("memory_limit", "cpu_time_limit"):
        if getattr(task, limit) is not None and task.executor == "thread":
            yield (
                (*keys, limit),
                ("a limit needs a process of its own: use executor worker or process, not thread"),
            )


def _task_config(dag: DAG, graph: Graph, task: Task, keys: Keys) -> Found:
    config = task.config
    if task.type == "shell":
        yield from _require(config, "command", str, keys, "a string")
        yield from _check_type(config, "env", dict, keys, "a mapping of names to strings")
        yield from _check_type(config, "cwd", str, keys, "a string")
    elif task.type == "python":
        yield from _callable(config, keys, required=True)
        yield from _check_type(config, "kwargs", dict, keys, "a mapping")
    elif task.type == "branch":
        yield from _branch(graph.downstream.get(task.task_id, ()), task, keys)
    elif task.type == "sensor":
        yield from _sensor(config, keys)
    elif task.type == "trigger_dag":
        yield from _trigger_dag(task, keys)
    for name, value in config.items():
        for sub_path, text in iter_strings(value):
            yield from _templates(dag, text, (*keys, name + sub_path), task)
    if task.expansion is not None:
        for name, source in task.expansion.sources.items():
            if isinstance(source, str):
                yield from _templates(dag, source, (*keys, "expand", name), None)


def _require(config: Any, key: str, kind: type, keys: Keys, label: str) -> Found:
    if key not in config:
        yield (*keys, key), f"missing {key}"
    else:
        yield from _check_type(config, key, kind, keys, label)


def _check_type(config: Any, key: str, kind: type, keys: Keys, label: str) -> Found:
    if key in config and not isinstance(config[key], kind):
        yield (*keys, key), f"expected {label}, got {type(config[key]).__name__}"


def _callable(config: Any, keys: Keys, *, required: bool, key: str = "callable") -> Found:
    if key not in config:
        if required:
            yield (*keys, key), f"missing {key} ('module:function')"
        return
    value = config[key]
    if callable(value):
        return
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        yield (*keys, key), f"expected 'module:function', got {value!r}"


def _branch(downstream: tuple[str, ...], task: Task, keys: Keys) -> Found:
    config = task.config
    has_branches, has_callable = "branches" in config, "callable" in config
    if has_branches == has_callable:
        yield keys, "a branch task needs exactly one of 'branches' or 'callable'"
    yield from _callable(config, keys, required=False)
    if has_callable and "default" in config:
        yield (*keys, "default"), "'default' goes with 'branches', not with 'callable'"
    branches = config.get("branches", [])
    if not isinstance(branches, list):
        yield (*keys, "branches"), "expected a list of {when, follow}"
        branches = []
    for index, branch in enumerate(branches):
        where: Keys = (*keys, "branches", index)
        if not isinstance(branch, dict) or set(branch) - {"when", "follow"}:
            yield where, "each branch is a mapping with exactly 'when' and 'follow'"
            continue
        try:
            parse_condition(branch.get("when", ""))
        except ExpressionError as exc:
            yield (*where, "when"), str(exc)
        yield from _follow(branch.get("follow"), downstream, (*where, "follow"))
    if "default" in config:
        yield from _follow(config["default"], downstream, (*keys, "default"))


def _follow(value: Any, downstream: tuple[str, ...], keys: Keys) -> Found:
    targets = [value] if isinstance(value, str) else value
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        yield keys, "expected a task id or a list of task ids"
        return
    for index, target in enumerate(targets):
        if target not in downstream:
            yield (*keys, index), f"'{target}' is not a direct downstream task of this branch"


def _trigger_dag(task: Task, keys: Keys) -> Found:
    config = task.config
    yield from _require(config, "dag_id", str, keys, "a DAG id")
    if isinstance(config.get("dag_id"), str) and (reason := invalid_id_reason(config["dag_id"])):
        yield (*keys, "dag_id"), reason
    yield from _check_type(config, "conf", dict, keys, "a mapping")
    yield from _check_type(config, "run_id", str, keys, "a string")
    if "wait" in config and not isinstance(config["wait"], bool):
        yield (*keys, "wait"), "expected true or false"
    if task.executor not in (None, "thread"):
        yield (*keys, "executor"), "a trigger_dag task runs on the engine's own threads"


def _sensor(config: Any, keys: Keys) -> Found:
    modes = [m for m in ("poke", "file", "until") if m in config]
    if len(modes) != 1:
        yield keys, "a sensor needs exactly one of 'poke', 'file' or 'until'"
    yield from _callable(config, keys, required=False, key="poke")
    yield from _check_type(config, "file", str, keys, "a path")
    if "until" in config:
        try:
            parse_until(config["until"])
        except ValueError as exc:
            yield (*keys, "until"), str(exc)


def parse_until(value: Any) -> time | datetime:
    """A sensor's ``until``: a time of day ``HH:MM[:SS]`` (on the logical date) or a date/time."""
    if isinstance(value, str) and len(value) <= 8 and ":" in value:
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"invalid time of day {value!r}: use HH:MM or HH:MM:SS") from None
    return parse_datetime(value)


def _templates(dag: DAG, text: str, keys: Keys, task: Task | None) -> Found:
    """Problems of the templates in ``text``, a setting of ``task`` (``None``: a setting
    that is rendered before the task is mapped, where ``map`` means nothing yet)."""
    try:
        references = list(find_references(text))
    except TemplateError as exc:
        yield keys, str(exc)
        return
    for reference in references:
        if reference.root in MAPPED_ROOTS:
            expansion = task.expansion if task is not None else None
            if expansion is None:
                yield keys, f"'{{{{ {reference.text} }}}}' is only known in a mapped task (expand)"
            elif (
                reference.root == "map"
                and expansion.mode != "kwargs"  # its keys come with the values
                and reference.parts[1] not in expansion.keys
            ):
                known = ", ".join(expansion.keys)
                yield keys, f"'{{{{ {reference.text} }}}}' names no expand key (known: {known})"
        elif reference.root == "payload":
            yield keys, f"'{{{{ {reference.text} }}}}' is only known in a webhook's when and conf"
        elif reference.root == "xcom":
            try:
                reference.xcom_task(dag.task_dict)
            except TemplateError as exc:
                yield keys, str(exc)


def _graph(dag: DAG, graph: Graph) -> Found:
    known = dag.task_dict
    for task in dag.tasks:
        for index, upstream in enumerate(task.depends_on):
            where: Keys = ("tasks", task.task_id, "depends_on", index)
            if upstream == task.task_id:
                yield where, f"task '{task.task_id}' depends on itself"
            elif upstream not in known:
                yield where, f"depends on unknown task '{upstream}'"
    cycle = graph.find_cycle()
    if cycle:
        yield ("tasks", cycle[0], "depends_on"), "cycle: " + " -> ".join(cycle)
