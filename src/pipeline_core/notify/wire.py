"""What goes on the wire with a notification besides its payload: the headers every delivery
carries, the signature, and the link to the run in the dashboard. Pure."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from pipeline_core.dag.templates import TEMPLATE_PATTERN

DELIVERY_HEADER = "X-Pipeline-Core-Delivery"
SIGNATURE_HEADER = "X-Pipeline-Core-Signature"
EVENT_HEADER = "X-Pipeline-Core-Event"


def run_url(public_url: str, dag_id: str, run_id: str | None) -> str:
    """Where the dashboard shows the run."""
    base = public_url.rstrip("/")
    if run_id is None:
        return f"{base}/ui/dags/{quote(dag_id, safe='')}"
    return f"{base}/ui/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body>``: what a receiver recomputes with its secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


DEFAULT_SUBJECT = "[pipeline-core] {{ event }}: {{ dag_id }} {{ run_id }}"
DEFAULT_BODY = (
    "{{ event }} in DAG {{ dag_id }}, run {{ run_id }}\n"
    "task: {{ task_id }} (try {{ try_number }})\nstate: {{ state }}\nerror: {{ error }}\n"
    "logical date: {{ logical_date }}\nwhen: {{ timestamp }}\n\n{{ url }}\n"
)


def render(template: str, payload: Mapping[str, Any]) -> str:
    """``template`` with each ``{{ field }}`` replaced by the payload's value (``-`` when
    the payload has none)."""

    def value(match: re.Match[str]) -> str:
        found = payload.get(match.group(1).strip())
        return "-" if found is None else str(found)

    return TEMPLATE_PATTERN.sub(value, template)


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: a readable line per fact, and a link to the run."""
    icon = {"run_succeeded": ":white_check_mark:", "task_succeeded": ":white_check_mark:",
            "task_retrying": ":repeat:", "deadline_missed": ":alarm_clock:"}.get(
        str(payload.get("event")), ":red_circle:")  # fmt: skip
    lines = [f"{icon} *{payload.get('event')}*: DAG `{payload.get('dag_id')}`, "
             f"run `{payload.get('run_id')}`"]  # fmt: skip
    if payload.get("task_id"):
        lines.append(f"Task: `{payload['task_id']}` (try {payload.get('try_number')})")
    if payload.get("error"):
        lines.append(f"Error: {payload['error']}")
    if payload.get("url"):
        lines.append(f"<{payload['url']}|Open the run in the dashboard>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
