"""The outbox through the API (in-process, every answer checked against the OpenAPI
document) and through ``pipeline-core notifications`` against a real server: filters,
history, redelivery, bad input, and no secret in any answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_core.store import open_store
from pipeline_core.store.base import Store
from pipeline_core.store.types import AttemptOutcome
from tests.api.conftest import serve
from tests.api.inprocess import AppClient
from tests.notify.test_dispatch import fail_tasks
from tests.store.test_conformance_outbox import register
from tests.test_remote_cli import cli

RULES = """
dag_id: etl
notify:
  - {on: [task_failed], webhook: {url: "http://127.0.0.1:9/hook", secret: "${env:HOOK_SECRET}",
     headers: {Authorization: "Bearer ${env:HOOK_TOKEN}"}}}
  - {on: [run_failed], slack: "http://127.0.0.1:9/slack"}
tasks: {a: {}, b: {}, c: {}}
"""


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("HOOK_SECRET", "very-secret-value")
    monkeypatch.setenv("HOOK_TOKEN", "token-value")
    opened = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    register(opened, RULES)
    fail_tasks(opened, "r1", ("a", "b"))
    fail_tasks(opened, "r2", ("a",))
    yield opened
    opened.close()


@pytest.fixture
def api(store: Store) -> Iterator[tuple[AppClient, Any]]:
    server = serve(store)
    yield AppClient(server), server
    server.stop()


def ids(answer: Any) -> list[str]:
    return [n["id"] for n in answer["data"]]


def test_list_filters_and_pages(api: tuple[AppClient, Any]) -> None:
    client, _ = api
    status, _, everything = client.request("GET", "/api/v1/notifications")
    assert status == 200 and everything["meta"]["total"] == 3
    assert [n["seq"] for n in everything["data"]] == sorted(
        (n["seq"] for n in everything["data"]), reverse=True
    )  # newest first
    assert len(ids(client.request("GET", "/api/v1/notifications?run_id=r1")[2])) == 2
    assert ids(client.request("GET", "/api/v1/notifications?dag_id=ghost")[2]) == []
    assert len(ids(client.request("GET", "/api/v1/notifications?state=pending")[2])) == 3
    assert ids(client.request("GET", "/api/v1/notifications?state=failed")[2]) == []
    page = client.request("GET", "/api/v1/notifications?limit=2")[2]
    assert len(page["data"]) == 2 and page["meta"]["total"] == 3


def test_bad_filters_are_400_naming_the_parameter(api: tuple[AppClient, Any]) -> None:
    client, _ = api
    for query, name in (("state=lost", "state"), ("limit=0", "limit"), ("limit=x", "limit")):
        status, _, body = client.request("GET", f"/api/v1/notifications?{query}")
        assert status == 400, query
        assert name in body["error"]["message"], body


def test_one_notification_has_its_payload_and_history_and_no_secret(
    api: tuple[AppClient, Any], store: Store
) -> None:
    client, _ = api
    first = ids(client.request("GET", "/api/v1/notifications?run_id=r2")[2])[0]
    store.notifications.claim_due(10**15, 1000, 10)
    store.notifications.record_attempts(
        [(first, AttemptOutcome("pending", 503, "busy", 12, due_ms=0))]
    )
    status, _, body = client.request("GET", f"/api/v1/notifications/{first}")
    assert status == 200
    data = body["data"]
    assert (data["event"], data["task_id"], data["attempts"], data["last_status"]) == (
        "task_failed",
        "a",
        1,
        503,
    )
    assert data["payload"]["error"] == "boom" and data["payload"]["delivery_id"] == first
    assert [(h["number"], h["status"], h["error"]) for h in data["history"]] == [(1, 503, "busy")]
    assert data["target"] == {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}
    everything = json.dumps(client.request("GET", "/api/v1/notifications")[2]) + json.dumps(body)
    for secret in ("very-secret-value", "token-value", "HOOK_SECRET", "Authorization"):
        assert secret not in everything
    missing = client.request("GET", "/api/v1/notifications/ntf-999-0")
    assert missing[0] == 404 and "ntf-999-0" in missing[2]["error"]["message"]


def test_redeliver_is_409_while_pending_and_keeps_the_id_after(
    api: tuple[AppClient, Any], store: Store
) -> None:
    client, _ = api
    first = ids(client.request("GET", "/api/v1/notifications?run_id=r2")[2])[0]
    status, _, body = client.request("POST", f"/api/v1/notifications/{first}/redeliver")
    assert status == 409 and "still being delivered" in body["error"]["message"]
    store.notifications.claim_due(10**15, 1000, 10)
    store.notifications.record_attempts([(first, AttemptOutcome("failed", 410, "gone", 12))])
    status, _, body = client.request("POST", f"/api/v1/notifications/{first}/redeliver")
    assert status == 200
    assert (body["data"]["id"], body["data"]["state"]) == (first, "pending")
    assert client.request("POST", "/api/v1/notifications/ntf-1-9/redeliver")[0] == 404


def test_the_command_line_lists_and_redelivers(store: Store) -> None:
    server = serve(store)
    url = f"http://127.0.0.1:{server.port}"
    try:
        listed = cli(url, "notifications", "list", "--run-id", "r1")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("task_failed") == 2 and "pending" in listed.stdout
        as_json = cli(url, "notifications", "list", "--state", "pending", "--output", "json")
        first = json.loads(as_json.stdout)[0]["id"]
        refused = cli(url, "notifications", "redeliver", first)
        assert refused.returncode == 3 and "still being delivered" in refused.stderr
        store.notifications.claim_due(10**15, 1000, 10)
        store.notifications.record_attempts([(first, AttemptOutcome("failed", 410, "gone", 12))])
        failed = cli(url, "notifications", "list", "--state", "failed")
        assert first in failed.stdout and "gone" in failed.stdout
        again = cli(url, "notifications", "redeliver", first)
        assert again.returncode == 0, again.stderr
        assert f"{first} is pending again" in again.stdout
        bad = cli(url, "notifications", "list", "--state", "lost")
        assert bad.returncode == 3 and "Traceback" not in bad.stderr
    finally:
        server.stop()
