"""One delivery attempt to each kind of target, against real receivers: what arrives, and
what each failure comes to (retried, or final)."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time

import pytest

from pipeline_core.notify.targets import SmtpSettings, Targets
from tests.notify.receivers import MailServer, Receiver

PAYLOAD = {
    "event": "task_failed",
    "delivery_id": "ntf-7-0",
    "dag_id": "etl",
    "run_id": "r1",
    "task_id": "load",
    "try_number": 2,
    "state": "failed",
    "error": "worker killed by signal 9 (out of memory?)",
    "url": "http://127.0.0.1:8080/ui/dags/etl/runs/r1",
}


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def test_a_webhook_gets_the_payload_its_headers_and_a_signature_that_verifies(receiver) -> None:
    targets = Targets(environ={"HOOK_SECRET": "s3cret", "TOKEN": "t0ken"})
    target = {
        "url": f"{receiver.url}/hook",
        "secret": "${env:HOOK_SECRET}",
        "headers": {"Authorization": "Bearer ${env:TOKEN}"},
    }
    result = targets.deliver("webhook", target, PAYLOAD)
    assert (result.ok, result.status) == (True, 200)
    [got] = receiver.wait_for(1)
    assert got.json == PAYLOAD and got.path == "/hook"
    assert got.delivery == "ntf-7-0" and got.headers["X-Pipeline-Core-Event"] == "task_failed"
    assert got.headers["Authorization"] == "Bearer t0ken"
    expected = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Pipeline-Core-Signature"] == f"sha256={expected}"


@pytest.mark.parametrize(
    ("status", "final"), [(410, True), (400, True), (500, False), (503, False), (429, False)]
)
def test_a_4xx_is_final_and_a_5xx_or_429_is_tried_again(receiver, status, final) -> None:
    receiver.status = lambda path: status
    result = Targets().deliver("webhook", {"url": receiver.url}, PAYLOAD)
    assert (result.ok, result.final, result.status) == (False, final, status)
    assert result.error == f"receiver answered {status}"


def test_a_redirect_is_not_followed_unless_allowed(receiver) -> None:
    receiver.status = lambda path: 307 if path == "/old" else 200
    receiver.location = f"{receiver.url}/new"
    refused = Targets().deliver("webhook", {"url": f"{receiver.url}/old"}, PAYLOAD)
    assert (refused.ok, refused.final, refused.status) == (False, True, 307)
    assert "follow_redirects" in (refused.error or "")
    assert [r.path for r in receiver.received] == ["/old"]
    followed = Targets().deliver(
        "webhook", {"url": f"{receiver.url}/old", "follow_redirects": True}, PAYLOAD
    )
    assert followed.ok and [r.path for r in receiver.received] == ["/old", "/old", "/new"]


def test_a_receiver_that_hangs_costs_one_timeout(receiver) -> None:
    receiver.hang = threading.Event()
    started = time.monotonic()
    result = Targets(timeout=0.5).deliver("webhook", {"url": receiver.url}, PAYLOAD)
    receiver.hang.set()
    assert (result.ok, result.final) == (False, False)
    assert result.error == "no answer within 0.5s" and time.monotonic() - started < 5


def test_a_receiver_that_is_down_is_tried_again() -> None:
    down = Receiver()  # never started: the port refuses
    result = Targets().deliver("webhook", {"url": down.url}, PAYLOAD)
    assert (result.ok, result.final) == (False, False)
    assert "cannot reach" in (result.error or "")


def test_a_missing_variable_at_delivery_is_reported_and_retried(receiver) -> None:
    result = Targets(environ={}).deliver("webhook", {"url": "${env:GONE_URL}"}, PAYLOAD)
    assert (result.ok, result.final) == (False, False)
    assert result.error == "environment variable 'GONE_URL' is not set"


def test_slack_gets_a_readable_message_with_a_link(receiver) -> None:
    assert Targets().deliver("slack", {"url": f"{receiver.url}/slack"}, PAYLOAD).ok
    [got] = receiver.wait_for(1)
    text = got.json["text"]
    assert "*task_failed*" in text and "`etl`" in text and "`r1`" in text and "`load`" in text
    assert "signal 9" in text and f"<{PAYLOAD['url']}|" in text
    assert got.json["blocks"][0]["text"]["text"] == text


def test_email_goes_through_a_real_smtp_server_with_templated_subject_and_body() -> None:
    with MailServer() as mail:
        targets = Targets(smtp=SmtpSettings("127.0.0.1", mail.port, "alerts@example.com"))
        target = {
            "to": ["oncall@example.com", "team@example.com"],
            "subject": "{{ dag_id }} failed: {{ task_id }}",
            "body": "See {{ url }} ({{ error }})",
        }
        assert targets.deliver("email", target, PAYLOAD).ok
        [message] = mail.wait_for(1)
    assert message["Subject"] == "etl failed: load"
    assert message["To"] == "oncall@example.com, team@example.com"
    assert message["From"] == "alerts@example.com"
    assert message["X-Pipeline-Core-Delivery"] == "ntf-7-0"
    body = message.get_payload(decode=True).decode()
    assert PAYLOAD["url"] in body and "signal 9" in body


def test_an_smtp_server_that_refuses_is_tried_again() -> None:
    with MailServer() as mail:
        mail.refuse = True
        targets = Targets(smtp=SmtpSettings("127.0.0.1", mail.port))
        result = targets.deliver("email", {"to": "oncall@example.com"}, PAYLOAD)
    assert (result.ok, result.final, result.status) == (False, False, 550)
    assert "refused" in (result.error or "")


def test_email_without_an_smtp_server_says_which_setting_is_missing() -> None:
    result = Targets().deliver("email", {"to": "oncall@example.com"}, PAYLOAD)
    assert not result.ok and "--smtp-host" in (result.error or "")


def test_a_callable_gets_the_notification_in_a_process_of_its_own(tmp_path, monkeypatch) -> None:
    out = tmp_path / "called.json"
    module = tmp_path / "alerting.py"
    module.write_text(
        "import json, os, pathlib\n"
        "def alert(n):\n"
        f"    pathlib.Path({str(out)!r}).write_text(json.dumps([n, os.getpid()]))\n"
        "def broken(n):\n"
        "    raise RuntimeError('pager is down')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    targets = Targets(timeout=20)
    assert targets.deliver("callable", {"ref": "alerting:alert"}, PAYLOAD).ok
    import json
    import os

    notification, pid = json.loads(out.read_text())
    assert notification == PAYLOAD and pid != os.getpid()
    raised = targets.deliver("callable", {"ref": "alerting:broken"}, PAYLOAD)
    assert (raised.ok, raised.final) == (False, False)
    assert "RuntimeError: pager is down" in (raised.error or "")
    missing = targets.deliver("callable", {"ref": "alerting:nowhere"}, PAYLOAD)
    assert (missing.ok, missing.final) == (False, True)
