"""What goes on the wire with a notification besides its payload: the headers every delivery
carries, the signature, and the link to the run in the dashboard. Pure."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

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
