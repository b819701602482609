"""Flow control of a DAG's runs: a concurrency key. Pure.

``concurrency: {key: "{{ dag_run.conf.env }}", limit: 1, on_conflict: queue}`` on a DAG
lets at most ``limit`` runs with the same rendered key be active at once. The key is a run
template (``dag_run.conf.*``, ``run_id``, ``dag_id``, ``ds``, ``ts``, ``logical_date``) or
plain text (one key for every run). What a trigger that finds the key full does:

- ``queue``: the run waits, queued, and starts in trigger order once the key has room;
- ``cancel_running``: the oldest active runs of the key are cancelled (their running tries
  killed) to make room — the newest run wins, like CI's cancel-in-progress;
- ``skip_new``: the trigger is refused (409) naming the active run.

(``concurrency: 16``, a number, is the other setting of that name: task slots per DAG.)
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline_core.dag.templates import (
    Reference,
    TemplateError,
    find_references,
    parse_template,
    render,
)
from pipeline_core.model import DagRun, iso

ON_CONFLICT = ("queue", "cancel_running", "skip_new")
KEY_MAX = 200
RUN_ROOTS = frozenset({"dag_run", "run_id", "dag_id", "ds", "ts", "logical_date"})
FIELDS = frozenset({"key", "limit", "on_conflict"})


class KeyError_(ValueError):
    """A run's concurrency key that cannot be rendered, saying why."""


@dataclass(frozen=True, slots=True)
class ConcurrencyKey:
    key: str
    limit: int = 1
    on_conflict: str = "queue"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "limit": self.limit, "on_conflict": self.on_conflict}

    def render(self, run: DagRun, task: Mapping[str, Any] | None = None) -> str:
        """The key of ``run`` (and of a try: ``task`` holds ``task_id``, ``map_index`` and
        ``map``); ``KeyError_`` when it renders to no text or too long a one."""
        return render_key(self.key, "concurrency key", run, task)


def render_key(template: str, what: str, run: DagRun, task: Mapping[str, Any] | None = None) -> str:
    """``template`` rendered for a run (and a try); ``KeyError_`` saying what is wrong."""

    def resolve(reference: Reference) -> Any:
        # Each value is worked out only when named: a key is rendered for every try.
        root, path, where = reference.root, reference.parts[1:], reference.root
        value: Any
        if root == "dag_run":
            value, path, where = dict(run.conf), path[1:], "the run's conf"
        elif task is not None and root in task:
            value = task[root]
        elif root in ("run_id", "dag_id"):
            value = run.run_id if root == "run_id" else run.dag_id
        elif root in ("ts", "logical_date"):
            value = iso(run.logical_date) or ""
        elif root == "ds":
            value = run.logical_date.strftime("%Y-%m-%d")
        else:
            raise KeyError_(f"{what} '{template}' has no value for '{reference.text}'")
        for part in path:
            if not isinstance(value, dict) or part not in value:
                raise KeyError_(f"{what} '{template}' has no value: {where} has no "
                                f"'{'.'.join(path)}'")  # fmt: skip
            value = value[part]
        return value

    try:
        value = render(template, resolve)
    except TemplateError as exc:
        raise KeyError_(str(exc)) from None
    if not isinstance(value, str):
        raise KeyError_(f"{what} '{template}' must render to text, got {type(value).__name__}")
    if not value or len(value) > KEY_MAX:
        raise KeyError_(
            f"{what} '{template}' renders to {len(value)} characters (1 to {KEY_MAX} allowed)"
        )
    return value


def parse_run_concurrency(
    raw: Mapping[str, Any],
    add: Callable[[tuple[Any, ...], str], None],
    roots: frozenset[str] = RUN_ROOTS,
) -> ConcurrencyKey | None:
    """The key a DAG's ``concurrency`` mapping states; problems are reported through ``add``
    (with their place) and leave ``None``."""
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        add(("concurrency",), f"unknown keys {', '.join(unknown)} (use key, limit, on_conflict)")
        return None
    key, limit = raw.get("key"), raw.get("limit", 1)
    on_conflict = raw.get("on_conflict", "queue")
    problems = []
    if not isinstance(key, str) or not key.strip():
        problems.append((("concurrency", "key"), "needs a key: text or a run template"))
    else:
        try:
            bad = [r.text for r in find_references(key) if r.root not in roots]
        except TemplateError as exc:
            bad, problems = [], [(("concurrency", "key"), str(exc))]
        if bad:
            problems.append((("concurrency", "key"), f"'{{{{ {bad[0]} }}}}' is not known when "
                             "a run is triggered (use dag_run.conf, run_id, ds, ts)"))  # fmt: skip
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        problems.append((("concurrency", "limit"), f"must be a whole number ≥ 1, got {limit!r}"))
    if on_conflict not in ON_CONFLICT:
        choices = ", ".join(ON_CONFLICT)
        problems.append(
            (
                ("concurrency", "on_conflict"),
                f"unknown on_conflict {on_conflict!r:.40} (use {choices})",
            )
        )
    for where, message in problems:
        add(where, message)
    return None if problems else ConcurrencyKey(str(key), limit, on_conflict)


# --- a task's limits ------------------------------------------------------------------------
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)s?\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}  # fmt: skip
TASK_ROOTS = RUN_ROOTS | {"task_id", "map_index"}


def parse_rate(text: object) -> float:
    """Tokens a second from ``100/m``, ``10/s``, ``5/hour``; ``ValueError`` saying why."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"rate {text!r:.40} is not N/s, N/m or N/h with N > 0 (such as '100/m')")
    return float(match.group(1)) / _PER[match.group(2)]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst``. ``key`` (a
    template) picks the bucket; ``None``: one bucket for the task."""

    rate: str
    burst: int = 1
    key: str | None = None
    per_second: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_second", parse_rate(self.rate))

    def to_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst, "key": self.key}


class Bucket:
    """Tokens of one rate-limit key at explicit moments (monotonic seconds). Starts full."""

    def __init__(self, per_second: float, burst: int, now: float) -> None:
        self.per_second, self.burst = per_second, burst
        self.tokens, self.updated = float(burst), now

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is free."""
        wait = self.wait(now)
        if wait == 0.0:
            self.tokens -= 1
        return wait

    def wait(self, now: float) -> float:
        """0 when a token is free (none is taken), else the seconds until one is."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        return 0.0 if self.tokens >= 1 - 1e-9 else (1 - self.tokens) / self.per_second


def parse_task_limits(
    raw: Mapping[str, Any], where: tuple[Any, ...], add: Callable[[tuple[Any, ...], str], None]
) -> tuple[ConcurrencyKey | None, RateLimit | None]:
    """A task's ``concurrency: {key, limit}`` and ``rate_limit: {rate, burst, key}``."""
    keyed = limited = None
    concurrency = raw.get("concurrency")
    if concurrency is not None:
        if not isinstance(concurrency, dict):
            add((*where, "concurrency"), "expected {key, limit}: at most limit tries per key")
        else:
            keyed = parse_run_concurrency(
                concurrency, lambda k, m: add((*where, *k), m), TASK_ROOTS
            )
            if keyed is not None and keyed.on_conflict != "queue":
                add((*where, "concurrency", "on_conflict"), "a task's tries can only queue")
                keyed = None
    rate_limit = raw.get("rate_limit")
    if rate_limit is not None:
        limited = _rate_limit(rate_limit, (*where, "rate_limit"), add)
    return keyed, limited


def _rate_limit(
    raw: object, where: tuple[Any, ...], add: Callable[[tuple[Any, ...], str], None]
) -> RateLimit | None:
    if not isinstance(raw, dict) or set(raw) - {"rate", "burst", "key"}:
        add(where, "expected {rate: '100/m', burst: 10, key: '...'} (rate required)")
        return None
    try:
        parse_rate(raw.get("rate"))
    except ValueError as exc:
        add((*where, "rate"), str(exc))
        return None
    burst, key = raw.get("burst", 1), raw.get("key")
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        add((*where, "burst"), f"must be a whole number ≥ 1, got {burst!r}")
        return None
    if key is not None and (not isinstance(key, str) or not _known(key, TASK_ROOTS)):
        add(
            (*where, "key"),
            "must be text or a template of the run (dag_run.conf, run_id, ds), task_id "
            "or map_index",
        )
        return None
    return RateLimit(str(raw["rate"]), burst, key)


@functools.lru_cache(maxsize=4096)
def names_a_try(template: str) -> bool:
    """Whether a key template names a try's own values (``task_id``, ``map_index``), so
    that it cannot be rendered once for the whole run."""
    return any(
        isinstance(piece, Reference) and piece.root in ("task_id", "map_index")
        for piece in parse_template(template)
    )


def _known(text: str, roots: frozenset[str]) -> bool:
    try:
        return all(r.root in roots for r in find_references(text))
    except TemplateError:
        return False
