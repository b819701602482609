"""Asset conditions, the pure part: which updates of which assets start a run.

A DAG scheduled on assets names a condition over asset URIs — ``orders & (customers |
refunds)`` — with ``&`` (all of), ``|`` (any of; ``&`` binds tighter) and parentheses. A URI
is any run of characters but blanks and ``&|()``: ``s3://bucket/orders``,
``db://warehouse/orders`` or a plain name.

Updates wait, per consuming DAG, until they satisfy its condition; each satisfied condition
makes one run, which consumes the updates that satisfied it (the oldest ones first). With
``a | b``, updates a, b, a make three runs; with ``a & b``, one run per fresh a-and-b pair.
With ``collapse``, every waiting update of the condition's assets goes into the one next
run. Deciding over a batch of waiting updates makes the same runs, in the same order, as
deciding after each update as it came (``plan``), so a restart or a slow follower changes
nothing. Nothing here reads a store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pipeline_core.dag.templates import TEMPLATE_PATTERN, TemplateError, find_references

#: Longest URI and condition accepted.
MAX_URI_LENGTH = 1000
MAX_CONDITION_LENGTH = 10_000
_TOKEN = re.compile(r"\s*(?:(?P<op>[&|()])|(?P<uri>[^\s&|()]+))")


class ConditionError(ValueError):
    """An asset condition that does not parse, with where it went wrong."""


@dataclass(frozen=True, slots=True)
class Asset:
    uri: str


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


Condition = Asset | AllOf | AnyOf


@dataclass(frozen=True, slots=True, order=True)
class Update:
    """One update of an asset, as a consumer waits on it: ``id`` orders updates as they
    came (the event log's sequence number)."""

    id: int
    uri: str


def parse_condition(text: object) -> Condition:
    """The condition ``text`` states; ``ConditionError`` saying what is wrong and where."""
    if not isinstance(text, str) or not text.strip():
        raise ConditionError("expected a condition over asset URIs, such as 'orders & refunds'")
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_CONDITION_LENGTH:,} characters")
    tokens = _tokens(text)
    condition, at = _any_of(tokens, 0, text)
    if at < len(tokens):
        raise ConditionError(f"unexpected {tokens[at][1]!r} at character {tokens[at][0] + 1}")
    return condition


def uris(condition: Condition) -> frozenset[str]:
    """Every asset the condition names."""
    if isinstance(condition, Asset):
        return frozenset({condition.uri})
    return frozenset().union(*(uris(item) for item in condition.items))


def to_text(condition: Condition, nested: bool = False) -> str:
    """The condition written out, parentheses only where needed."""
    if isinstance(condition, Asset):
        return condition.uri
    if isinstance(condition, AllOf):
        return " & ".join(to_text(item, True) for item in condition.items)
    text = " | ".join(to_text(item) for item in condition.items)
    return f"({text})" if nested else text


def take(condition: Condition, pending: Mapping[str, Sequence[Update]]) -> list[Update] | None:
    """The updates that satisfy ``condition`` first — of the ways it can be satisfied, the
    one complete soonest, each asset's oldest waiting update — or ``None``."""
    if isinstance(condition, Asset):
        waiting = pending.get(condition.uri)
        return [waiting[0]] if waiting else None
    if isinstance(condition, AllOf):
        chosen: dict[int, Update] = {}
        for item in condition.items:
            part = take(item, pending)
            if part is None:
                return None
            chosen.update((u.id, u) for u in part)
        return sorted(chosen.values())
    ways = [w for w in (take(item, pending) for item in condition.items) if w is not None]
    return min(ways, key=max) if ways else None


def plan(
    condition: Condition, pending: Mapping[str, Sequence[Update]], *, collapse: bool = False
) -> list[list[Update]]:
    """The runs the waiting updates make now, in order, each with the updates it consumes.
    ``pending`` (each asset's updates, oldest first) is not changed."""
    left = {uri: sorted(updates) for uri, updates in pending.items() if updates}
    if collapse:
        if take(condition, left) is None:
            return []
        return [sorted(u for uri in uris(condition) for u in left.get(uri, ()))]
    runs: list[list[Update]] = []
    while (consumed := take(condition, left)) is not None:
        runs.append(consumed)
        for update in consumed:
            left[update.uri].remove(update)
    return runs


def _tokens(text: str) -> list[tuple[int, str]]:
    tokens: list[tuple[int, str]] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            break  # only blanks are left
        value = match.group("op") or match.group("uri")
        if value is None:
            break
        if match.group("uri") and len(value) > MAX_URI_LENGTH:
            raise ConditionError(f"an asset URI is at most {MAX_URI_LENGTH} characters")
        tokens.append((match.start(match.lastgroup or 0), value))
        at = match.end()
    return tokens


Tokens = list[tuple[int, str]]


def _any_of(tokens: Tokens, at: int, text: str) -> tuple[Condition, int]:
    return _joined(tokens, at, text, "|", _all_of, AnyOf)


def _all_of(tokens: Tokens, at: int, text: str) -> tuple[Condition, int]:
    return _joined(tokens, at, text, "&", _operand, AllOf)


def _joined(
    tokens: Tokens, at: int, text: str, operator: str,
    part: Callable[[Tokens, int, str], tuple[Condition, int]], kind: type[AnyOf] | type[AllOf],
) -> tuple[Condition, int]:  # fmt: skip
    """Parts separated by ``operator``: one part as it is, several as ``kind``."""
    item, at = part(tokens, at, text)
    items = [item]
    while at < len(tokens) and tokens[at][1] == operator:
        item, at = part(tokens, at + 1, text)
        items.append(item)
    return (items[0] if len(items) == 1 else kind(tuple(items))), at


def _operand(tokens: Tokens, at: int, text: str) -> tuple[Condition, int]:
    if at >= len(tokens):
        raise ConditionError(f"{text.strip()!r:.80} ends where an asset URI or '(' is expected")
    position, value = tokens[at]
    if value == "(":
        inner, at = _any_of(tokens, at + 1, text)
        if at >= len(tokens) or tokens[at][1] != ")":
            raise ConditionError(f"'(' at character {position + 1} is never closed")
        return inner, at + 1
    if value in "&|)":
        raise ConditionError(
            f"expected an asset URI or '(' at character {position + 1}, got {value!r}"
        )
    return Asset(value), at + 1


@dataclass(frozen=True, slots=True)
class AssetSchedule:
    """When a DAG runs on assets: ``condition`` over asset URIs; ``collapse`` merges the
    updates that arrive while a run of the DAG is queued or running into one next run."""

    condition: Condition
    collapse: bool = False

    @property
    def text(self) -> str:
        return to_text(self.condition)

    def to_dict(self) -> dict[str, object]:
        return {"assets": self.text, "collapse": self.collapse}


SCHEDULE_KEYS = ("cron", "assets", "collapse")
Report = Callable[[tuple[str | int, ...], str], None]


def parse_schedule(raw: object, report: Report) -> tuple[str | None, AssetSchedule | None]:
    """A DAG's ``schedule``: a cron expression or preset (a string), or a mapping with
    ``cron`` and/or ``assets`` (a condition) and ``collapse``. Returns the cron part and the
    asset part; every problem goes to ``report(keys, message)``."""
    if raw is None or isinstance(raw, str):
        return raw, None
    if not isinstance(raw, Mapping):
        report(("schedule",), "expected a cron expression, or a mapping of cron and assets")
        return None, None
    for key in raw:
        if key not in SCHEDULE_KEYS:
            report(("schedule", str(key)), f"unknown key {key!r:.40} (use cron, assets, collapse)")
    cron = raw.get("cron")
    if cron is not None and not isinstance(cron, str):
        report(("schedule", "cron"), "expected a cron expression or preset such as '@daily'")
        cron = None
    collapse = raw.get("collapse", False)
    if not isinstance(collapse, bool):
        report(("schedule", "collapse"), "expected true or false")
        collapse = False
    if "assets" not in raw:
        if cron is None:
            report(("schedule",), "a schedule mapping needs cron, assets or both")
        elif "collapse" in raw:
            report(("schedule", "collapse"), "'collapse' needs 'assets'")
        return cron, None
    try:
        return cron, AssetSchedule(parse_condition(raw["assets"]), collapse)
    except ConditionError as exc:
        report(("schedule", "assets"), str(exc))
        return cron, None


#: The templates an outlet may use: what is known of the run, not what its tasks pushed.
OUTLET_ROOTS = frozenset({"run_id", "ds", "ts", "logical_date", "dag_id", "task_id", "dag_run"})


def outlet_problem(uri: object) -> str | None:
    """Why ``uri`` is not an outlet (an asset URI, maybe with run templates), or ``None``."""
    if not isinstance(uri, str) or not uri.strip():
        return "expected an asset URI such as 's3://bucket/orders'"
    if len(uri) > MAX_URI_LENGTH:
        return f"an asset URI is at most {MAX_URI_LENGTH} characters"
    try:
        references = list(find_references(uri))
    except TemplateError as exc:
        return str(exc)
    for reference in references:
        if reference.root not in OUTLET_ROOTS:
            return f"'{{{{ {reference.text} }}}}': an outlet may name only what is known of the run"
    bare = TEMPLATE_PATTERN.sub("x", uri)
    if any(c.isspace() or c in "&|()" for c in bare):
        return f"asset URI {uri!r:.60} has a blank or one of &|() in it"
    return None
