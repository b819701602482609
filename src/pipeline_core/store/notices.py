"""What a notification says: the kind an event is, the rules it matches, and the one payload
shape every target gets. Pure: the outbox writer builds payloads from what its transaction
read."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline_core.dag.notify import Rule, rules_from_data
from pipeline_core.events import Event

#: Events a rule may hear, by the state an event moves to.
RUN_KINDS = {"failed": "run_failed", "success": "run_succeeded", "cancelled": "run_cancelled"}
TASK_KINDS = {"failed": "task_failed", "up_for_retry": "task_retrying", "success": "task_succeeded"}
DEADLINE_MISSED = "deadline.missed"
#: The longest error text a payload carries; the rest is cut with a note of how much.
MAX_ERROR_CHARS = 4000


def kind_of(event: Event) -> str | None:
    """The notification kind of ``event`` (``run_failed``, ``task_retrying``, ...), or
    ``None`` when no rule can hear it."""
    if event.type == "task.state_changed":
        return TASK_KINDS.get(event.payload.get("new_state", ""))
    if event.type == "run.state_changed":
        return RUN_KINDS.get(event.payload.get("new_state", ""))
    if event.type == DEADLINE_MISSED:
        return "deadline_missed"
    return None


@dataclass(frozen=True, slots=True)
class DagRules:
    """A DAG's rules: its own (every kind), and each task's (its task's kinds)."""

    rules: tuple[Rule, ...] = ()
    task_rules: Mapping[str, tuple[Rule, ...]] | None = None

    @classmethod
    def of(cls, definition: Mapping[str, Any] | None) -> DagRules:
        """From a DAG's serialised definition (``dag.serialize.dag_to_dict``)."""
        if not definition:
            return cls()
        tasks = {
            t["task_id"]: rules_from_data(t.get("notify"))
            for t in definition.get("tasks", ())
            if t.get("notify")
        }
        return cls(rules_from_data(definition.get("notify")), tasks)

    def __bool__(self) -> bool:
        return bool(self.rules or self.task_rules)

    def matching(self, kind: str, task_id: str | None) -> Iterator[tuple[str, Rule]]:
        """``(label, rule)`` of every rule that hears ``kind`` (of ``task_id``), the label
        naming the rule as the DAG file does (``notify[0]``, ``tasks.load.notify[1]``)."""
        for index, rule in enumerate(self.rules):
            if kind in rule.on:
                yield f"notify[{index}]", rule
        if task_id is not None and self.task_rules:
            for index, rule in enumerate(self.task_rules.get(task_id, ())):
                if kind in rule.on:
                    yield f"tasks.{task_id}.notify[{index}]", rule


def truncate(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def delivery_id(seq: int, index: int) -> str:
    """Stable for a notification: the event's ``seq`` and the rule's place among those it
    matched."""
    return f"ntf-{seq}-{index}"


def payload_of(
    kind: str,
    event: Event,
    run: Mapping[str, Any] | None,
    task: Mapping[str, Any] | None,
    failed: Sequence[tuple[str, str | None]] = (),
) -> dict[str, Any]:
    """The payload: the kind, the run (and task) it is about, the state, the error, the
    run's dates and when it happened. ``run``/``task`` are the stored rows' fields;
    ``failed`` the failed tasks of a failed run with their errors."""
    data = event.payload
    payload: dict[str, Any] = {
        "event": kind,
        "dag_id": event.dag_id,
        "run_id": event.run_id,
        "state": data.get("new_state") or "missed",
        "timestamp": data.get("timestamp"),
        "seq": event.seq,
    }
    if event.task_id is not None:
        payload["task_id"] = event.task_id
        payload["try_number"] = data.get("try_number")
    error = data.get("error") or data.get("reason")
    if kind == "run_failed" and failed:
        error = "; ".join(f"task '{t}' failed: {e or 'no reason given'}" for t, e in failed)
    if kind == "deadline_missed":
        payload["deadline"] = data.get("deadline")
        payload["deadline_action"] = data.get("action")
        error = f"run did not end by its deadline {data.get('deadline')}"
    payload["error"] = truncate(error)
    for key in ("logical_date", "start_date", "end_date"):
        payload[key] = (run or {}).get(key)
    if task is not None:
        payload["task_start_date"] = task.get("start_date")
        payload["task_end_date"] = task.get("end_date")
    return payload
