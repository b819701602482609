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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.templates import Reference, TemplateError, find_references, render
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

    def render(self, run: DagRun) -> str:
        """The key of ``run``; ``KeyError_`` when it renders to no text or too long a one."""
        when = iso(run.logical_date) or ""
        scalars = {"run_id": run.run_id, "dag_id": run.dag_id, "ts": when, "logical_date": when,
                   "ds": run.logical_date.strftime("%Y-%m-%d")}  # fmt: skip

        def resolve(reference: Reference) -> Any:
            if reference.root != "dag_run":
                return scalars[reference.root]
            value: Any = dict(run.conf)
            for part in reference.parts[2:]:
                if not isinstance(value, dict) or part not in value:
                    raise KeyError_(
                        f"concurrency key '{self.key}' has no value: the run's conf has no "
                        f"'{'.'.join(reference.parts[2:])}'"
                    )
                value = value[part]
            return value

        try:
            value = render(self.key, resolve)
        except TemplateError as exc:
            raise KeyError_(str(exc)) from None
        if not isinstance(value, str):
            raise KeyError_(
                f"concurrency key '{self.key}' must render to text, got {type(value).__name__}"
            )
        if not value or len(value) > KEY_MAX:
            raise KeyError_(
                f"concurrency key '{self.key}' renders to {len(value)} characters "
                f"(1 to {KEY_MAX} allowed)"
            )
        return value


def parse_run_concurrency(
    raw: Mapping[str, Any], add: Callable[[tuple[Any, ...], str], None]
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
            bad = [r.text for r in find_references(key) if r.root not in RUN_ROOTS]
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
