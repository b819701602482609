"""Inbound webhooks, the pure part: what a DAG declares under ``webhooks:`` and how a delivery
is checked, filtered and turned into a run's conf.

    webhooks:
      github_push:
        secret: "${env:GH_SECRET}"                      # HMAC-SHA256 of the raw body
        signature_header: X-Hub-Signature-256            # "sha256=<hex>" (GitHub's scheme)
        idempotency_header: X-GitHub-Delivery
        when: "{{ payload.ref }} == 'refs/heads/main'"
        conf: {sha: "{{ payload.after }}"}

The secret is always an ``${env:NAME}`` reference (checked at load, read when a delivery
comes), so it is never stored with the DAG nor answered by the API. ``when`` is a safe
expression (``dag.expressions``) and ``conf`` a mapping of templates, both over ``payload``
(the delivery's JSON body) and the other templates a run knows before it starts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline_core.dag.expressions import ExpressionError, parse_condition
from pipeline_core.dag.notify import ENV_REFERENCE
from pipeline_core.dag.templates import (
    Reference,
    TemplateError,
    find_references,
    iter_strings,
    render,
)

KEYS = ("secret", "signature_header", "idempotency_header", "when", "conf")
DEFAULT_SIGNATURE_HEADER = "X-Hub-Signature-256"
#: The templates a webhook's ``when`` and ``conf`` may use.
WEBHOOK_ROOTS = frozenset({"payload", "dag_id"})
Report = Callable[[tuple[str | int, ...], str], None]


class DeliveryRefused(ValueError):
    """A delivery that makes no run: ``status`` says why (401, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str
    #: ``${env:NAME}``: where the secret is read from when a delivery comes.
    secret: str
    signature_header: str = DEFAULT_SIGNATURE_HEADER
    idempotency_header: str | None = None
    when: str | None = None
    conf: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conf", MappingProxyType(dict(self.conf)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "secret": self.secret, "signature_header":
                self.signature_header, "idempotency_header": self.idempotency_header,
                "when": self.when, "conf": dict(self.conf)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Webhook:
        return cls(data["name"], data["secret"], data.get("signature_header")
                   or DEFAULT_SIGNATURE_HEADER, data.get("idempotency_header"),
                   data.get("when"), data.get("conf") or {})  # fmt: skip

    def verify(self, body: bytes, signature: str | None, environ: Mapping[str, str]) -> None:
        """``DeliveryRefused(401)`` unless ``signature`` is ``sha256=<hex>`` of ``body``
        with the secret (compared in constant time); ``KeyError`` when the secret's variable
        is not set in ``environ``."""
        name = ENV_REFERENCE.fullmatch(self.secret)
        secret = environ[name.group(1)] if name else self.secret
        if not signature:
            raise DeliveryRefused(401, f"missing signature header {self.signature_header}")
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
            raise DeliveryRefused(401, f"the {self.signature_header} signature does not match")

    def conf_of(self, payload: Any, dag_id: str) -> dict[str, Any] | None:
        """The conf of the run a delivery makes, or ``None`` when ``when`` is false;
        ``DeliveryRefused(422)`` naming a field the payload does not have."""
        resolve = _resolver(payload, dag_id)
        try:
            if self.when is not None and not parse_condition(self.when).evaluate(resolve):
                return None
            return {key: _render(value, resolve) for key, value in self.conf.items()}
        except (TemplateError, ExpressionError) as exc:
            raise DeliveryRefused(422, str(exc)) from None


def parse_webhooks(raw: Any, report: Report, environ: Mapping[str, str]) -> tuple[Webhook, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        report(("webhooks",), "expected a mapping of webhook names to their settings")
        return ()
    found: list[Webhook] = []
    for name, settings in raw.items():
        keys: tuple[str | int, ...] = ("webhooks", str(name))
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            report(keys, f"a webhook name is letters, digits, '_' and '-', got {name!r:.40}")
            continue
        if not isinstance(settings, Mapping):
            report(keys, "expected a mapping of secret, signature_header, when, conf")
            continue
        webhook = _webhook(name, settings, keys, report, environ)
        if webhook is not None:
            found.append(webhook)
    return tuple(found)


def _webhook(
    name: str, raw: Mapping[str, Any], keys: tuple[str | int, ...], report: Report,
    environ: Mapping[str, str],
) -> Webhook | None:  # fmt: skip
    problems = 0
    for key in raw:
        if key not in KEYS:
            report((*keys, str(key)), f"unknown key {key!r:.40} (use {', '.join(KEYS)})")
            problems += 1
    secret = raw.get("secret")
    reference = ENV_REFERENCE.fullmatch(secret) if isinstance(secret, str) else None
    if reference is None:
        report((*keys, "secret"), "expected a reference such as '${env:GH_SECRET}': a webhook's "
               "secret is read from the environment, never written in the DAG")  # fmt: skip
        problems += 1
    elif reference.group(1) not in environ:
        name_ = reference.group(1)
        report((*keys, "secret"), f"environment variable '{name_}' is not set (referenced as "
               f"${{env:{name_}}})")  # fmt: skip
        problems += 1
    for key in ("signature_header", "idempotency_header", "when"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            report((*keys, key), "expected a non-empty string")
            problems += 1
    when = raw.get("when")
    if isinstance(when, str):
        try:
            parse_condition(when)
        except ExpressionError as exc:
            report((*keys, "when"), str(exc))
            problems += 1
    conf = raw.get("conf") or {}
    if not isinstance(conf, Mapping):
        report((*keys, "conf"), "expected a mapping of names to values or templates")
        problems += 1
        conf = {}
    for text in [when or "", *(t for _, t in iter_strings(dict(conf)))]:
        problems += _template_problems(text, keys, report)
    if problems:
        return None
    return Webhook(name, str(secret), raw.get("signature_header") or DEFAULT_SIGNATURE_HEADER,
                   raw.get("idempotency_header"), when, conf)  # fmt: skip


def _template_problems(text: str, keys: tuple[str | int, ...], report: Report) -> int:
    try:
        references = list(find_references(text))
    except TemplateError as exc:
        report(keys, str(exc))
        return 1
    bad = [r for r in references if r.root not in WEBHOOK_ROOTS]
    for reference in bad:
        report(keys, f"'{{{{ {reference.text} }}}}': a webhook knows payload.<field> and dag_id")
    return len(bad)


def _resolver(payload: Any, dag_id: str) -> Callable[[Reference], Any]:
    def resolve(reference: Reference) -> Any:
        if reference.root == "dag_id":
            return dag_id
        value = payload
        where = "payload"
        for part in reference.parts[1:]:
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise TemplateError(
                    f"the payload has no '{where}.{part}' ({{{{ {reference.text} }}}})"
                )
            where += f".{part}"
        return value

    return resolve


def _render(value: Any, resolve: Callable[[Reference], Any]) -> Any:
    if isinstance(value, str):
        return render(value, resolve) if "{{" in value else value
    if isinstance(value, Mapping):
        return {k: _render(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, resolve) for v in value]
    return value
