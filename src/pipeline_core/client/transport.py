"""HTTP for the client: one keep-alive connection, the API's error envelope as exceptions,
and retries with backoff where a retry cannot do a thing twice. Standard library only."""

from __future__ import annotations

import http.client
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit


class ClientError(Exception):
    """Anything the client could not do."""


@dataclass
class APIError(ClientError):
    """The server refused: its status, the envelope's stable ``code``, ``message`` and
    ``details``, and the request id to quote."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class ServerUnreachable(ClientError):
    """No answer from the server (refused, reset, timed out) after the retries."""


class StreamTimedOut(ClientError):
    """An event stream read until a deadline reached it."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]


#: Exceptions that mean the request may not have reached the server, or got no answer.
CONNECTION_ERRORS = (OSError, http.client.HTTPException)
#: What a kept-alive connection the server closed while idle gives on its next request.
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Transport:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float,
        retries: int,
        backoff: float,
    ) -> None:
        url = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.scheme, self.host = url.scheme, url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.base_url = f"{url.scheme}://{url.netloc}{self.prefix}"
        self.token, self.timeout = token, timeout
        self.retries, self.backoff = retries, backoff
        self._connection: http.client.HTTPConnection | None = None

    def connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        """A new connection (event streams and followed logs hold one of their own)."""
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=timeout or self.timeout)

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "pipeline-core-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def path(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        pairs = [(k, _text(v)) for k, v in (query or {}).items() if v is not None]
        return self.prefix + path + (f"?{urlencode(pairs, doseq=True)}" if pairs else "")

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        accept: tuple[int, ...] = (),
        retry_on_no_answer: bool | None = None,
    ) -> Answer:
        """The answer (2xx, or a status in ``accept``); ``APIError`` for any other status,
        ``ServerUnreachable`` when no answer came. Retried with exponential backoff on 503
        and, for reads and requests that carry an idempotency key, on a lost connection (a
        refused connection is always retried: the request never arrived)."""
        data = None if body is None else json.dumps(body).encode()
        sent = self.headers(headers)
        if data is not None:
            sent["Content-Type"] = "application/json"
        target = self.path(path, query)
        if retry_on_no_answer is None:
            retry_on_no_answer = method in ("GET", "HEAD") or "Idempotency-Key" in sent
        attempt = 0
        while True:
            attempt += 1
            reused = self._connection is not None
            try:
                status, payload, answer_headers = self._once(method, target, data, sent, timeout)
            except CONNECTION_ERRORS as exc:
                self.close()
                if reused and isinstance(exc, STALE):
                    attempt -= 1  # a kept-alive connection the server had closed: not sent
                    continue
                refused = isinstance(exc, ConnectionRefusedError)
                if attempt > self.retries or not (refused or retry_on_no_answer):
                    raise ServerUnreachable(
                        f"no answer from {self.base_url} ({_reason(exc)}) after {attempt} "
                        f"attempt(s)"
                    ) from None
                time.sleep(self._delay(attempt))
                continue
            if status == 503 and attempt <= self.retries:
                time.sleep(max(self._delay(attempt), _retry_after(answer_headers)))
                continue
            if 200 <= status < 300 or status in accept:
                return Answer(status, payload, answer_headers)
            raise error_of(status, payload, answer_headers)

    def _once(
        self,
        method: str,
        target: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
    ) -> tuple[int, Any, dict[str, str]]:
        if self._connection is None:
            self._connection = self.connect()
        connection = self._connection
        connection.timeout = timeout or self.timeout
        if connection.sock is not None:
            connection.sock.settimeout(connection.timeout)
        connection.request(method, target, body=data, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        if response.will_close:
            self.close()
        kind = answer_headers.get("content-type", "")
        payload: Any = raw
        if raw and kind.startswith("application/json"):
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw
        return response.status, payload, answer_headers

    def _delay(self, attempt: int) -> float:
        return float(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random() / 2))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def error_of(status: int, payload: Any, headers: Mapping[str, str]) -> APIError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        return APIError(
            status,
            str(error.get("code", "error")),
            str(error.get("message", "")),
            dict(error.get("details") or {}),
            headers.get("x-request-id"),
        )
    text = payload.decode(errors="replace")[:500] if isinstance(payload, bytes) else str(payload)
    return APIError(status, "http_error", text.strip() or f"HTTP {status}", {}, None)


def _retry_after(headers: Mapping[str, str]) -> float:
    try:
        return min(30.0, float(headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return value
