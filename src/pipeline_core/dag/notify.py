"""Notification rules: which events of a DAG notify whom. Pure values and their parser.

A rule names the event kinds it listens to (``on``) and exactly one target: ``webhook``,
``slack``, ``email`` or ``callable``. Rules of the DAG hear every kind; rules of a task
(its own ``notify``, or ``default_args.notify``) hear that task's events only. Secrets are
written as ``${env:NAME}`` and stay references everywhere they are kept (the DAG's serialised
form, the outbox, API answers); they are resolved at delivery, from the environment of the
process that delivers, and checked at load so a missing one is an error naming its line.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipeline_core.dag.templates import TEMPLATE_PATTERN

RUN_KINDS = ("run_failed", "run_succeeded", "run_cancelled")
TASK_KINDS = ("task_failed", "task_retrying", "task_succeeded")
DEADLINE_KINDS = ("deadline_missed",)
EVENT_KINDS = (*RUN_KINDS, *TASK_KINDS, *DEADLINE_KINDS)
TARGETS: dict[str, tuple[str, ...]] = {
    "webhook": ("url", "headers", "secret", "follow_redirects"),
    "slack": ("url",),
    "email": ("to", "subject", "body"),
    "callable": ("ref", "file"),
}
RULE_KEYS = ("on", *TARGETS)
#: Fields of a payload an e-mail's subject or body may name as ``{{ field }}``.
TEMPLATE_FIELDS = (
    "event", "dag_id", "run_id", "task_id", "try_number", "state", "error", "logical_date",
    "start_date", "end_date", "timestamp", "url", "delivery_id", "deadline",
)  # fmt: skip
#: ``${env:NAME}``: a value read from the delivering process's environment.
ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

Keys = tuple[str | int, ...]
Report = Callable[[Keys, str], None]


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: the kinds it hears, its target kind and the target's settings (as written,
    references unresolved)."""

    on: tuple[str, ...]
    target: str
    settings: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"on": list(self.on), self.target: dict(self.settings)}


def parse_rules(
    raw: Any, keys: Keys, report: Report, environ: Mapping[str, str], *, task_scoped: bool
) -> tuple[Rule, ...]:
    """The rules of a ``notify`` list; every problem goes to ``report(keys, message)``."""
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        raw = [raw]
    if not isinstance(raw, list):
        report(keys, f"expected a list of rules, got {type(raw).__name__}")
        return ()
    rules = []
    for index, item in enumerate(raw):
        rule = _rule(item, (*keys, index), report, environ, task_scoped)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def rules_from_data(raw: Any) -> tuple[Rule, ...]:
    """Rules from their serialised form (already validated when the DAG was loaded)."""
    if not isinstance(raw, list):
        return ()
    rules = []
    for item in raw:
        target = next((t for t in TARGETS if t in item), None)
        if target is not None:
            rules.append(Rule(tuple(item.get("on", ())), target, dict(item[target])))
    return tuple(rules)


def references(value: Any) -> Iterator[str]:
    """Every ``${env:NAME}`` name in ``value`` (strings, lists and mappings within)."""
    if isinstance(value, str):
        yield from ENV_REFERENCE.findall(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from references(item)


def resolve(value: Any, environ: Mapping[str, str]) -> Any:
    """``value`` with every reference replaced by the environment's value (``KeyError``
    naming the variable when one is not set)."""
    if isinstance(value, str):
        return ENV_REFERENCE.sub(lambda m: environ[m.group(1)], value)
    if isinstance(value, Mapping):
        return {k: resolve(v, environ) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, environ) for v in value]
    return value


def _rule(
    item: Any, keys: Keys, report: Report, environ: Mapping[str, str], task_scoped: bool
) -> Rule | None:
    if not isinstance(item, Mapping):
        report(keys, f"a rule is a mapping with 'on' and one target, got {type(item).__name__}")
        return None
    if True in item and "on" not in item:  # YAML 1.1 reads a bare ``on:`` key as true
        item = {("on" if key is True else key): value for key, value in item.items()}
    for key in item:
        if key not in RULE_KEYS:
            close = difflib.get_close_matches(str(key), RULE_KEYS, n=1, cutoff=0.6)
            hint = (
                f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(RULE_KEYS)})"
            )
            report((*keys, str(key)), f"unknown key '{key}'{hint}")
    on = _kinds(item.get("on"), (*keys, "on"), report, task_scoped)
    targets = [t for t in TARGETS if t in item]
    if len(targets) != 1:
        found = f"got {' and '.join(targets)}" if targets else "got none"
        report(keys, f"a rule needs exactly one target of {', '.join(TARGETS)}; {found}")
        return None
    target = targets[0]
    settings = _settings(target, item[target], (*keys, target), report)
    if settings is None or on is None:
        return None
    for name in sorted(set(references(settings))):
        if name not in environ:
            report(
                (*keys, target),
                f"environment variable '{name}' is not set (referenced as ${{env:{name}}})",
            )
    return Rule(on, target, settings)


def _kinds(raw: Any, keys: Keys, report: Report, task_scoped: bool) -> tuple[str, ...] | None:
    if raw is None:
        report(keys, f"missing 'on': name the events, any of {', '.join(EVENT_KINDS)}")
        return None
    kinds = [raw] if isinstance(raw, str) else raw
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        report(keys, "expected an event kind or a non-empty list of them")
        return None
    good = True
    allowed = TASK_KINDS if task_scoped else EVENT_KINDS
    for kind in kinds:
        if kind in allowed:
            continue
        good = False
        if kind in EVENT_KINDS:
            report(keys, f"a task's rule hears only its task's events ({', '.join(TASK_KINDS)}), "
                   f"not '{kind}'")  # fmt: skip
            continue
        close = difflib.get_close_matches(kind, EVENT_KINDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (use {', '.join(EVENT_KINDS)})"
        report(keys, f"unknown event kind '{kind}'{hint}")
    return tuple(dict.fromkeys(kinds)) if good else None


def _settings(target: str, raw: Any, keys: Keys, report: Report) -> dict[str, Any] | None:
    shorthand = {"webhook": "url", "slack": "url", "callable": "ref", "email": "to"}.get(target)
    by_itself = isinstance(raw, str) or (target == "email" and isinstance(raw, list))
    if shorthand and (by_itself or (target == "callable" and callable(raw))):
        raw = {shorthand: raw}
    if not isinstance(raw, Mapping):
        report(keys, f"expected the {target} settings as a mapping, got {type(raw).__name__}")
        return None
    problems: list[tuple[Keys, str]] = []
    for key in raw:
        if key not in TARGETS[target]:
            allowed = ", ".join(TARGETS[target])
            problems.append(((*keys, str(key)), f"unknown {target} setting '{key}' ({allowed})"))
    settings: dict[str, Any] = {}
    for key in TARGETS[target]:
        if key in raw:
            value = raw[key]
            if key == "ref" and callable(value):  # a function given in a Python DAG file
                module = sys.modules.get(value.__module__)
                if getattr(module, "__file__", None):
                    settings["file"] = module.__file__  # type: ignore[union-attr]
                value = f"{value.__module__}:{value.__qualname__}"
            reason = _CHECKS[key](value)
            if reason:
                problems.append(((*keys, key), reason))
            settings[key] = list(value) if isinstance(value, tuple) else value
    required = TARGETS[target][0]
    if required not in raw:
        problems.append((keys, f"missing '{required}' for the {target} target"))
    for where, message in problems:
        report(where, message)
    return None if problems else settings


def _url(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a URL, got {type(value).__name__}"
    if ENV_REFERENCE.fullmatch(value):
        return None  # the whole URL is a secret: checked when it is delivered to
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"invalid URL {value!r:.80}: use http:// or https:// and a host"
    return None


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {type(value).__name__}"


def _template(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    unknown = [
        name
        for name in (m.strip() for m in TEMPLATE_PATTERN.findall(value))
        if name not in TEMPLATE_FIELDS
    ]
    if unknown:
        return f"unknown field {{{{ {unknown[0]} }}}} (use {', '.join(TEMPLATE_FIELDS)})"
    return None


def _headers(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return "expected a mapping of header names to strings"
    bad = [k for k, v in value.items() if not _TOKEN.fullmatch(k) or "\n" in v or "\r" in v]
    return f"invalid header {bad[0]!r:.60}" if bad else None


def _addresses(value: Any) -> str | None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(a, str) for a in items):
        return "expected an address or a non-empty list of addresses"
    bad = [a for a in items if not (_EMAIL.fullmatch(a) or ENV_REFERENCE.fullmatch(a))]
    return f"invalid e-mail address {bad[0]!r:.80}" if bad else None


def _flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "expected true or false"


def _reference(value: Any) -> str | None:
    if isinstance(value, str) and _CALLABLE.fullmatch(value):
        return None
    return f"expected 'module:function', got {value!r:.80}"


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "url": _url,
    "headers": _headers,
    "secret": _text,
    "follow_redirects": _flag,
    "to": _addresses,
    "subject": _template,
    "body": _template,
    "ref": _reference,
    "file": _text,
}
