"""Dynamic task mapping, the pure part: how a mapped task's values become its instances.

A mapped task names, for each of its keys, a list of values: a literal list, or a template
that renders to one (an upstream task's XCom, the run's conf). Several keys give the cross
product of their lists (``product``, the first key varying slowest) or their elements side
by side (``zip``, as long as the shortest list); ``kwargs`` maps over one list of
mappings, each the values of one instance (Airflow's ``expand_kwargs``). Instance ``i`` gets
the ``i``-th combination, so the instances' order — and a reducer's list — follows the
values' order.

Nothing here reads a store: the engine renders the templates and hands the lists over.
``parse_expansion`` reads a task's mapping settings from a DAG document, reporting every
problem with the path of the setting it concerns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline_core.dag.templates import TemplateError, parse_template

MODES = ("product", "zip", "kwargs")
#: The task types that run code, so can be mapped.
MAPPABLE_TYPES = ("python", "shell", "sensor", "branch")
#: The settings of a mapped task, beside its type's own.
MAPPING_KEYS = ("expand", "expand_mode", "max_map_length", "max_active_per_task")
#: The most instances any task may be mapped into.
MAX_LENGTH = 1_000_000
Keys = tuple[str | int, ...]
Report = Callable[[Keys, str], None]
#: The most instances a task is mapped into unless the engine or the task says otherwise.
DEFAULT_MAX_LENGTH = 10_000


class MappingError(ValueError):
    """The values a mapped task was given cannot be mapped (not a list, too many)."""


@dataclass(frozen=True, slots=True)
class Expansion:
    """How a task is mapped: each key's source (a literal list, or a template string),
    ``mode`` (``product`` or ``zip``), at most ``max_length`` instances (``None``: the
    engine's limit) and at most ``max_active`` of them running at once (``None``: no limit
    but the pools' and the DAG's)."""

    sources: Mapping[str, Any]
    mode: str = "product"
    max_length: int | None = None
    max_active: int | None = None
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        object.__setattr__(self, "_keys", tuple(self.sources))

    @property
    def keys(self) -> tuple[str, ...]:
        return self._keys

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sources": dict(self.sources), "mode": self.mode}
        if self.max_length is not None:
            data["max_length"] = self.max_length
        if self.max_active is not None:
            data["max_active"] = self.max_active
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Expansion:
        return cls(data["sources"], data.get("mode", "product"), data.get("max_length"),
                   data.get("max_active"))  # fmt: skip


def checked_lists(
    expansion: Expansion, resolved: Mapping[str, Any], limit: int = DEFAULT_MAX_LENGTH
) -> dict[str, list[Any]]:
    """Each key's rendered value, checked: a list (a tuple counts), the instances it makes
    no more than the task's ``max_length`` or else ``limit``. ``MappingError`` names the
    key, what it came from and what is wrong."""
    lists: dict[str, list[Any]] = {}
    for name in expansion.keys:
        value = resolved[name]
        if not isinstance(value, list | tuple):
            source = expansion.sources[name]
            where = f" (from {source})" if isinstance(source, str) else ""
            raise MappingError(
                f"expand key '{name}'{where} must be a list to map over, got {type(value).__name__}"
            )
        lists[name] = list(value)
        if expansion.mode == "kwargs":
            _check_kwargs(name, lists[name])
    most = expansion.max_length if expansion.max_length is not None else limit
    count = length(expansion, lists)
    if count > most:
        raise MappingError(f"{count:,} instances to map, more than max_map_length {most:,}")
    return lists


def _check_kwargs(name: str, values: list[Any]) -> None:
    for index, element in enumerate(values):
        if not isinstance(element, Mapping) or not all(
            isinstance(k, str) and k.isidentifier() for k in element
        ):
            raise MappingError(
                f"expand_kwargs '{name}' element {index} must be a mapping of names to values, "
                f"got {type(element).__name__}"
            )


def length(expansion: Expansion, lists: Mapping[str, Sequence[Any]]) -> int:
    """How many instances ``lists`` make (0 maps nothing: the task is skipped)."""
    sizes = [len(lists[name]) for name in expansion.keys]
    if expansion.mode in ("zip", "kwargs"):
        return min(sizes, default=0)
    return math.prod(sizes) if sizes else 0


def values_at(
    expansion: Expansion, lists: Mapping[str, Sequence[Any]], index: int
) -> dict[str, Any]:
    """The values of instance ``index``: ``{key: element}``. ``IndexError`` past the end."""
    if not 0 <= index < length(expansion, lists):
        raise IndexError(f"no instance {index} of {length(expansion, lists)}")
    if expansion.mode == "kwargs":
        return dict(lists[expansion.keys[0]][index])
    if expansion.mode == "zip":
        return {name: lists[name][index] for name in expansion.keys}
    values: dict[str, Any] = {}
    for name in reversed(expansion.keys):  # the last key varies fastest, as in product()
        size = len(lists[name])
        index, position = divmod(index, size)
        values[name] = lists[name][position]
    return {name: values[name] for name in expansion.keys}


def all_values(expansion: Expansion, lists: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every instance's values, in index order (for a few: ``values_at`` picks one)."""
    if expansion.mode == "kwargs":
        return [dict(element) for element in lists[expansion.keys[0]]]
    columns = [lists[name] for name in expansion.keys]
    rows = zip(*columns, strict=False) if expansion.mode == "zip" else itertools.product(*columns)
    return [dict(zip(expansion.keys, row, strict=True)) for row in rows]


def parse_expansion(
    raw: Mapping[str, Any], task_type: str, keys: Keys, report: Report
) -> Expansion | None:
    """The mapping settings of the task ``raw`` (``None`` when it has none or they are
    wrong; every problem goes to ``report(keys, message)``)."""
    if "expand" not in raw:
        for key in MAPPING_KEYS[1:]:
            if key in raw:
                report((*keys, key), f"'{key}' needs 'expand' (the values to map over)")
        return None
    where = (*keys, "expand")
    expand = raw["expand"]
    if task_type not in MAPPABLE_TYPES:
        report(where, f"a {task_type} task runs no code to map (map {', '.join(MAPPABLE_TYPES)})")
        return None
    if not isinstance(expand, Mapping) or not expand:
        report(where, "expected a mapping of keys to the lists to map over")
        return None
    problems = 0
    given = raw.get("kwargs")
    kwargs: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    for name, source in expand.items():
        reason = _source_problem(name, source, task_type, kwargs)
        if reason:
            report((*where, str(name)), reason)
            problems += 1
    mode = raw.get("expand_mode", "product")
    if mode not in MODES:
        report((*keys, "expand_mode"), f"unknown expand_mode {mode!r:.40} (use {', '.join(MODES)})")
        problems += 1
    elif mode == "kwargs" and len(expand) != 1:
        report(
            (*keys, "expand_mode"),
            "expand_mode kwargs maps over one list of mappings: give one key",
        )
        problems += 1
    limits = {}
    for key, low, high in (("max_map_length", 1, MAX_LENGTH), ("max_active_per_task", 1, None)):
        value = raw.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < low
            or (high is not None and value > high)
        ):  # fmt: skip
            bound = f"from {low} to {high:,}" if high else f"of {low} or more"
            report((*keys, key), f"expected a whole number {bound}, got {value!r:.40}")
            problems += 1
        limits[key] = value
    if problems:
        return None
    return Expansion(dict(expand), mode, limits["max_map_length"], limits["max_active_per_task"])


def _source_problem(
    name: Any, source: Any, task_type: str, kwargs: Mapping[str, Any]
) -> str | None:
    if not isinstance(name, str) or not name.isidentifier():
        return f"expand keys are names (letters, digits, '_'), got {name!r:.40}"
    if task_type == "python" and name in kwargs:
        return f"'{name}' is both in kwargs and in expand: give it in one of them"
    if isinstance(source, list | tuple):
        return None
    if not isinstance(source, str):
        example = "{{ xcom.<task>.return_value }}"
        return f"expected a list or a template such as {example}, got {type(source).__name__}"
    try:
        pieces = parse_template(source.strip())
    except TemplateError as exc:
        return str(exc)
    if len(pieces) != 1 or isinstance(pieces[0], str):
        return "expected one template for the whole value, such as {{ xcom.<task>.return_value }}"
    if pieces[0].root not in ("xcom", "dag_run"):
        return f"'{{{{ {pieces[0].text} }}}}' is not a list: map over an XCom or the run's conf"
    return None
