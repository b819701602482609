"""Turn a raw DAG document (the YAML format, as plain Python data) into a validated ``DAG``.

Both authoring styles end here: the YAML loader passes what it parsed, the Python API builds
the same document. Every problem is collected — unknown keys with a "did you mean", wrong
types, bad durations and dates — then the model-level checks of ``validation`` run, and all
issues are raised together as one ``DagValidationError``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline_core._gc import gc_paused
from pipeline_core.dag.assets import outlet_problem, parse_schedule
from pipeline_core.dag.flow import parse_run_concurrency, parse_task_limits
from pipeline_core.dag.mapping import MAPPING_KEYS, parse_expansion
from pipeline_core.dag.model import DAG, Task, parse_datetime, parse_duration, parse_size
from pipeline_core.dag.notify import parse_rules
from pipeline_core.dag.validation import validate_dag
from pipeline_core.dag.webhooks import parse_webhooks
from pipeline_core.errors import DagValidationError, Issue
from pipeline_core.state import TriggerRule

Keys = tuple[str | int, ...]

DAG_KEYS = (
    "dag_id",
    "description",
    "schedule",
    "timezone",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "concurrency",
    "tags",
    "default_args",
    "is_paused",
    "notify",
    "deadline",
    "deadline_action",
    "webhooks",
    "tasks",
)
DEADLINE_ACTIONS = ("continue", "cancel")
COMMON_TASK_KEYS = (
    "type",
    "depends_on",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "timeout",
    "pool",
    "priority_weight",
    "executor",
    "memory_limit",
    "cpu_time_limit",
    "notify",
    "outlets",
    "concurrency",
    "rate_limit",
)
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "noop": (),
    "shell": ("command", "env", "cwd"),
    "python": ("callable", "kwargs"),
    "branch": ("branches", "default", "callable"),
    "sensor": ("poke", "file", "until", "poke_interval", "kwargs"),
    "trigger_dag": ("dag_id", "conf", "wait", "run_id", "poke_interval"),
}
DEFAULT_ARG_KEYS = tuple(
    k
    for k in COMMON_TASK_KEYS
    if k not in ("type", "depends_on", "outlets", "concurrency", "rate_limit")
)


def format_path(keys: Keys) -> str:
    """``("tasks", "load", "depends_on", 1)`` → ``tasks.load.depends_on[1]``."""
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


class IssueCollector:
    """Accumulates issues with their key paths so a loader can attach line numbers later."""

    def __init__(self) -> None:
        self.found: list[tuple[Keys, str]] = []
        #: Where ``${env:NAME}`` references of notification rules must be set.
        self.environ: Mapping[str, str] = os.environ

    def add(self, keys: Keys, message: str) -> None:
        self.found.append((keys, message))

    def issues(self, file: str | None, line_of: Callable[[Keys], int | None]) -> list[Issue]:
        return [Issue(msg, format_path(k), file, line_of(k)) for k, msg in self.found]


def dag_from_spec(
    raw: object,
    *,
    default_dag_id: str | None = None,
    fileloc: str | None = None,
    line_of: Callable[[Keys], int | None] = lambda keys: None,
    extra_issues: list[Issue] | None = None,
    environ: Mapping[str, str] | None = None,
) -> DAG:
    """Build and validate a ``DAG`` from a raw document; raise ``DagValidationError`` if invalid.
    ``environ`` (default: this process's) is where ``${env:NAME}`` references must exist."""
    with gc_paused():
        return _dag_from_spec(
            raw, default_dag_id, fileloc, line_of, extra_issues or [], environ or os.environ
        )


def _dag_from_spec(
    raw: object,
    default_dag_id: str | None,
    fileloc: str | None,
    line_of: Callable[[Keys], int | None],
    extra_issues: list[Issue],
    environ: Mapping[str, str],
) -> DAG:
    found = IssueCollector()
    found.environ = environ
    if raw is None:
        found.add((), "empty DAG document")
    dag = _build_dag(raw, default_dag_id, fileloc, found) if _is_mapping(raw, (), found) else None
    if dag is not None:
        already_reported = {keys for keys, _ in found.found}
        for keys, message in validate_dag(dag):
            if keys not in already_reported:
                found.add(keys, message)
    issues = [*extra_issues, *found.issues(fileloc, line_of)]
    issues.sort(key=lambda issue: issue.line or 0)
    if issues or dag is None:
        raise DagValidationError(issues)
    return dag


def _is_mapping(value: object, keys: Keys, found: IssueCollector) -> bool:
    if isinstance(value, Mapping):
        return True
    if value is None and not keys:
        return False  # reported as an empty document
    what = "nothing" if value is None else type(value).__name__
    found.add(keys, f"expected a mapping, got {what}")
    return False


def check_unknown_keys(
    mapping: Mapping[Any, Any], allowed: tuple[str, ...], keys: Keys, found: IssueCollector
) -> None:
    """Report every key of ``mapping`` not in ``allowed``, suggesting the closest known one."""
    for key in mapping:
        if key in allowed:
            continue
        if not isinstance(key, str):
            found.add(keys, f"keys must be strings, got {key!r}")
            continue
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(allowed)})"
        found.add((*keys, key), f"unknown key '{key}'{hint}")


class _Reader:
    """Typed access to one mapping of the document, recording problems instead of raising."""

    def __init__(self, mapping: Mapping[str, Any], keys: Keys, found: IssueCollector) -> None:
        self.mapping, self.keys, self.found = mapping, keys, found

    def get(self, key: str, kind: str, default: Any = None) -> Any:
        if key not in self.mapping:
            return default
        value = self.mapping[key]
        try:
            return _CONVERTERS[kind](value)
        except (TypeError, ValueError) as exc:
            self.found.add((*self.keys, key), str(exc))
            return default


def _expect(kinds: type | tuple[type, ...], label: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool) and bool not in (
            kinds if isinstance(kinds, tuple) else (kinds,)
        ):
            raise TypeError(f"expected {label}, got a boolean")
        if not isinstance(value, kinds):
            raise TypeError(f"expected {label}, got {_describe(value)}")
        return value

    return convert


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"[:80]


def _string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"expected a list of strings, got {_describe(value)}")
    return tuple(value)


def _optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": _expect(str, "a string"),
    "opt_str": _optional(_expect(str, "a string")),
    "bool": _expect(bool, "true or false"),
    "int": _expect(int, "an integer"),
    "duration": parse_duration,
    "opt_duration": _optional(parse_duration),
    "opt_size": _optional(parse_size),
    "str_list": _string_list,
    "mapping": _expect(dict, "a mapping"),
}


def _build_dag(
    raw: Any, default_dag_id: str | None, fileloc: str | None, found: IssueCollector
) -> DAG | None:
    check_unknown_keys(raw, DAG_KEYS, (), found)
    read = _Reader(raw, (), found)
    dag_id = read.get("dag_id", "str", default_dag_id)
    if dag_id is None:
        found.add(("dag_id",), "missing dag_id")
        dag_id = ""
    tz_name = read.get("timezone", "str", "UTC")
    tz = _timezone(tz_name, found)
    default_args = _default_args(read.get("default_args", "mapping", {}), found)
    tasks = _tasks(raw.get("tasks"), default_args, found)
    cron, assets = parse_schedule(raw.get("schedule"), found.add)
    keyed = isinstance(raw.get("concurrency"), dict)  # a key's limit, not task slots
    return DAG(
        dag_id=dag_id,
        tasks=tuple(tasks),
        description=read.get("description", "opt_str"),
        schedule=cron,
        assets=assets,
        webhooks=parse_webhooks(raw.get("webhooks"), found.add, found.environ),
        timezone=tz_name,
        start_date=_date(read, "start_date", tz),
        end_date=_date(read, "end_date", tz),
        catchup=read.get("catchup", "bool", False),
        max_active_runs=read.get("max_active_runs", "int", 1),
        concurrency=16 if keyed else read.get("concurrency", "int", 16),
        run_concurrency=parse_run_concurrency(raw["concurrency"], found.add) if keyed else None,
        tags=read.get("tags", "str_list", ()),
        default_args=raw.get("default_args") if isinstance(raw.get("default_args"), dict) else {},
        is_paused=read.get("is_paused", "bool", False),
        fileloc=fileloc,
        notify=parse_rules(
            raw.get("notify"), ("notify",), found.add, found.environ, task_scoped=False
        ),
        deadline=read.get("deadline", "opt_duration"),
        deadline_action=_choice(read, "deadline_action", DEADLINE_ACTIONS),
    )


def _choice(read: _Reader, key: str, choices: tuple[str, ...]) -> str:
    value: str = read.get(key, "str", choices[0])
    if value not in choices:
        read.found.add((key,), f"unknown {key} {value!r:.60} (use {', '.join(choices)})")
        return choices[0]
    return value


def _timezone(name: str, found: IssueCollector) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        found.add(
            ("timezone",), f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin"
        )
        return ZoneInfo("UTC")


def _date(read: _Reader, key: str, tz: tzinfo) -> Any:
    value = read.mapping.get(key)
    if value is None:
        return None
    try:
        return parse_datetime(value, tz)
    except ValueError as exc:
        read.found.add((key,), str(exc))
        return None


def _default_args(raw: Mapping[str, Any], found: IssueCollector) -> dict[str, Any]:
    check_unknown_keys(raw, DEFAULT_ARG_KEYS, ("default_args",), found)
    return {k: v for k, v in raw.items() if k in DEFAULT_ARG_KEYS}


def _tasks(raw: Any, default_args: dict[str, Any], found: IssueCollector) -> list[Task]:
    if raw is None:
        found.add(("tasks",), "missing tasks: a DAG needs at least one task")
        return []
    if not isinstance(raw, Mapping):
        found.add(("tasks",), f"expected a mapping of task id to task, got {_describe(raw)}")
        return []
    if not raw:
        found.add(("tasks",), "a DAG needs at least one task")
    tasks = []
    for task_id, body in raw.items():
        keys: Keys = ("tasks", str(task_id))
        document = {} if body is None else body
        if not isinstance(task_id, str):
            found.add(keys, f"task ids must be strings, got {_describe(task_id)}")
        elif _is_mapping(document, keys, found):
            tasks.append(task_from_spec(task_id, {**default_args, **document}, keys, found))
    return tasks


def task_from_spec(
    task_id: str, body: Mapping[str, Any], keys: Keys, found: IssueCollector
) -> Task:
    """One task from its document (``default_args`` already merged in)."""
    read = _Reader(body, keys, found)
    task_type = read.get("type", "str", "noop")
    allowed = COMMON_TASK_KEYS + MAPPING_KEYS + TYPE_KEYS.get(task_type, ())
    check_unknown_keys(
        {k: v for k, v in body.items() if task_type in TYPE_KEYS or k in COMMON_TASK_KEYS},
        allowed,
        keys,
        found,
    )
    config = {
        k: v
        for k, v in body.items()
        if k not in COMMON_TASK_KEYS and k not in MAPPING_KEYS and k in allowed
    }
    if "poke_interval" in config:
        config["poke_interval"] = read.get("poke_interval", "duration", 30.0)
    keyed, rate_limit = parse_task_limits(body, keys, found.add)
    return Task(
        task_id=task_id,
        type=task_type,
        depends_on=read.get("depends_on", "str_list", ()),
        trigger_rule=_trigger_rule(read),
        retries=read.get("retries", "int", 0),
        retry_delay=read.get("retry_delay", "duration", 0.0),
        retry_exponential_backoff=read.get("retry_exponential_backoff", "bool", False),
        max_retry_delay=read.get("max_retry_delay", "opt_duration"),
        timeout=read.get("timeout", "opt_duration"),
        pool=read.get("pool", "str", "default_pool"),
        priority_weight=read.get("priority_weight", "int", 1),
        executor=read.get("executor", "opt_str"),
        memory_limit=read.get("memory_limit", "opt_size"),
        cpu_time_limit=read.get("cpu_time_limit", "opt_duration"),
        notify=parse_rules(
            body.get("notify"), (*keys, "notify"), found.add, found.environ, task_scoped=True
        ),
        config=config,
        expansion=parse_expansion(body, task_type, keys, found.add),
        outlets=_outlets(body.get("outlets"), keys, found),
        concurrency_key=keyed,
        rate_limit=rate_limit,
    )


def _outlets(raw: Any, keys: Keys, found: IssueCollector) -> tuple[str, ...]:
    if raw is None:
        return ()
    listed = [raw] if isinstance(raw, str) else raw
    if not isinstance(listed, list):
        found.add((*keys, "outlets"), "expected a list of asset URIs")
        return ()
    for index, uri in enumerate(listed):
        if reason := outlet_problem(uri):
            found.add((*keys, "outlets", index), reason)
    return tuple(u for u in listed if isinstance(u, str))


def _trigger_rule(read: _Reader) -> TriggerRule:
    value = read.get("trigger_rule", "str", "all_success")
    try:
        return TriggerRule(value)
    except ValueError:
        rules = [r.value for r in TriggerRule]
        close = difflib.get_close_matches(value, rules, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (use one of {', '.join(rules)})"
        read.found.add((*read.keys, "trigger_rule"), f"unknown trigger_rule '{value}'{hint}")
        return TriggerRule.ALL_SUCCESS
