"""Delivery to each kind of target: one attempt, and what came of it.

Every attempt ends in a ``Result``: delivered, failed for good (a 4xx, a redirect not
allowed, a callable that cannot be imported), or worth trying again (the receiver is down,
hangs past the timeout, answers 5xx, 408 or 429; an SMTP server refuses). References to the
environment are resolved here, at the last moment, and never written anywhere.
"""

from __future__ import annotations

import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from pipeline_core._version import __version__
from pipeline_core.dag.notify import resolve
from pipeline_core.notify.wire import (
    DEFAULT_BODY,
    DEFAULT_SUBJECT,
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    render,
    signature,
    slack_message,
)

#: Statuses worth another attempt: the receiver may take it later.
RETRY_STATUSES = frozenset({408, 425, 429})
#: What a callable's process exits with when its reference cannot be called at all.
EXIT_BAD_REFERENCE = 3


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str | None = None
    port: int = 25
    sender: str = "pipeline-core@localhost"
    starttls: bool = False
    user: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """``ok``; else ``final`` (no point trying again) or not; the status the receiver
    answered, if any, and why it did not take it."""

    ok: bool
    final: bool = False
    status: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Targets:
    """Delivers one payload to one target, each attempt bounded by ``timeout`` seconds."""

    timeout: float = 10.0
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def deliver(self, kind: str, target: Mapping[str, Any], payload: Mapping[str, Any]) -> Result:
        try:
            settings = resolve(target, self.environ)
        except KeyError as exc:
            return Result(False, error=f"environment variable {exc.args[0]!r} is not set")
        if kind == "webhook":
            return self._webhook(settings, payload)
        if kind == "slack":
            return self._send(settings["url"], _body(slack_message(payload)), {}, payload, False)
        if kind == "email":
            return self._email(settings, payload)
        if kind == "callable":
            return self._callable(settings["ref"], settings.get("file"), payload)
        return Result(False, final=True, error=f"unknown target kind {kind!r}")

    def _webhook(self, settings: Mapping[str, Any], payload: Mapping[str, Any]) -> Result:
        body = _body(payload)
        headers = dict(settings.get("headers") or {})
        if settings.get("secret"):
            headers[SIGNATURE_HEADER] = signature(settings["secret"], body)
        follow = bool(settings.get("follow_redirects", False))
        return self._send(settings["url"], body, headers, payload, follow)

    def _send(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        payload: Mapping[str, Any],
        follow: bool,
    ) -> Result:
        request = urllib.request.Request(url, data=body, method="POST")
        for name, value in {
            "Content-Type": "application/json",
            "User-Agent": f"pipeline-core/{__version__}",
            DELIVERY_HEADER: str(payload.get("delivery_id", "")),
            EVENT_HEADER: str(payload.get("event", "")),
            **headers,
        }.items():
            request.add_header(name, value)
        try:
            with _OPENERS[follow].open(request, timeout=self.timeout) as response:
                response.read(65536)
                return Result(True, status=response.status)
        except urllib.error.HTTPError as exc:
            return _status_result(exc.code, exc.headers.get("Location"), follow)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, socket.timeout | TimeoutError):
                return Result(False, error=f"no answer within {self.timeout:g}s")
            return Result(
                False, final=isinstance(exc, ValueError), error=f"cannot reach {url}: {reason}"
            )

    def _email(self, settings: Mapping[str, Any], payload: Mapping[str, Any]) -> Result:
        smtp = self.smtp
        if not smtp.host:
            return Result(False, error="no SMTP server: set --smtp-host or PIPELINE_CORE_SMTP_HOST")
        to = settings["to"]
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = ", ".join([to] if isinstance(to, str) else to)
        message["Subject"] = render(settings.get("subject") or DEFAULT_SUBJECT, payload)[:900]
        message[DELIVERY_HEADER] = str(payload.get("delivery_id", ""))
        message.set_content(render(settings.get("body") or DEFAULT_BODY, payload))
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=self.timeout) as client:
                if smtp.starttls:
                    client.starttls(context=ssl.create_default_context())
                if smtp.user:
                    client.login(smtp.user, smtp.password or "")
                client.send_message(message)
            return Result(True)
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            return Result(
                False, status=exc.smtp_code, error=f"SMTP server refused: {exc.smtp_code} {text}"
            )
        except smtplib.SMTPRecipientsRefused as exc:
            return Result(
                False, error=f"SMTP server refused the recipients: {sorted(exc.recipients)}"
            )
        except (smtplib.SMTPException, OSError) as exc:
            return Result(False, error=f"cannot send through {smtp.host}:{smtp.port}: {exc}")

    def _callable(self, ref: str, file: str | None, payload: Mapping[str, Any]) -> Result:
        """In a process of its own (guest code never runs on the dispatcher's threads),
        killed when it outlives the timeout."""
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pipeline_core.notify.call", ref, *([file] if file else [])],
                input=_body(payload),
                capture_output=True,
                timeout=self.timeout,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return Result(False, error=f"{ref} did not return within {self.timeout:g}s")
        if done.returncode == 0:
            return Result(True)
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        final = done.returncode == EXIT_BAD_REFERENCE
        return Result(False, final=final, error=f"{ref} failed (exit {done.returncode}): {tail[0]}")


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect with the same POST, body and headers (what a receiver that moved
    wants; urllib would drop the body or refuse)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request:
        return urllib.request.Request(
            newurl,
            data=req.data,
            headers=dict(req.header_items()),
            method=req.get_method(),
            unverifiable=True,
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx surfaces as an HTTPError


#: Built once (an opener holds no state of a request): following redirects or not.
_OPENERS = {
    True: urllib.request.build_opener(_Redirects()),
    False: urllib.request.build_opener(_NoRedirects()),
}


def _status_result(status: int, location: str | None, follow: bool) -> Result:
    if 300 <= status < 400:
        hint = "" if follow else "; set follow_redirects: true to follow it"
        return Result(False, final=True, status=status, error=f"redirected to {location}{hint}")
    final = 400 <= status < 500 and status not in RETRY_STATUSES
    return Result(False, final=final, status=status, error=f"receiver answered {status}")


def _body(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
