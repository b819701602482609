"""Inbound webhooks through ``pipeline-core serve`` and ``requests``, signed as GitHub signs:
a good signature starts a run (202) with a conf made from the payload, a bad or missing one
is refused (401), a replayed delivery answers the first run, ``when`` filters, a payload
without a field a template names is a 422, a body that is not JSON a 400, a flood a 429 with
Retry-After — and none of them needs the API token."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.test_serve_faults import Server, write_dag

pytestmark = pytest.mark.slow
SECRET = "It's a Secret to Everybody"
DAG = """
dag_id: deploy
webhooks:
  github_push:
    secret: "${env:PIPELINE_CORE_TEST_GH_SECRET}"
    signature_header: X-Hub-Signature-256
    idempotency_header: X-GitHub-Delivery
    when: "{{ payload.ref }} == 'refs/heads/main'"
    conf: {sha: "{{ payload.after }}", repo: "{{ payload.repository.full_name }}"}
tasks:
  build: {type: noop}
"""
PUSH = {"ref": "refs/heads/main", "after": "abc123", "repository": {"full_name": "acme/app"}}


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PIPELINE_CORE_TEST_GH_SECRET", SECRET)
    folder = tmp_path / "dags"
    write_dag(folder, DAG, "deploy")
    started = Server(f"sqlite:///{tmp_path / 'w.db'}", folder, tmp_path / "serve.log",
                     "--auth-token", "t0k3n", "--webhook-rate", "20")  # fmt: skip
    requests.patch(f"http://127.0.0.1:{started.port}/api/v1/dags/deploy", json={"is_paused": False},
                   headers={"Authorization": "Bearer t0k3n"}, timeout=10)  # fmt: skip
    yield started
    started.stop()


def deliver(server: Server, payload: Any, *, delivery: str | None = None,
            signature: str | None = "good", raw: bytes | None = None) -> requests.Response:  # fmt: skip
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signed(body) if signature == "good" else signature
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    url = f"http://127.0.0.1:{server.port}/api/v1/webhooks/deploy/github_push"
    return requests.post(url, data=body, headers=headers, timeout=30)


def test_a_signed_push_starts_one_run_and_a_replay_answers_it(server: Server) -> None:
    answer = deliver(server, PUSH, delivery="d-1")
    assert answer.status_code == 202, answer.text
    run = answer.json()["data"]["run"]
    assert run["conf"] == {"sha": "abc123", "repo": "acme/app", "webhook": "github_push"}
    assert answer.headers["Location"] == f"/api/v1/dags/deploy/runs/{quote(run['run_id'], safe='')}"
    again = deliver(server, PUSH, delivery="d-1")
    assert again.status_code == 200 and again.json()["data"]["replayed"] is True
    assert again.json()["data"]["run"]["run_id"] == run["run_id"]
    other = deliver(server, {**PUSH, "after": "def456"}, delivery="d-2")
    assert other.status_code == 202 and other.json()["data"]["run"]["run_id"] != run["run_id"]


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"signature": None}, 401, "missing signature header X-Hub-Signature-256"),
        ({"signature": "sha256=" + "0" * 64}, 401, "signature does not match"),
        ({"signature": "sha1=deadbeef"}, 401, "signature does not match"),
        ({"raw": b"not json"}, 400, "not JSON"),
        ({"payload": {"ref": "refs/heads/main"}}, 422, "payload.after"),
        ({"payload": {"after": "x"}}, 422, "payload.ref"),
    ],
)
def test_refused_deliveries_make_no_run(
    server: Server, change: dict[str, Any], status: int, message: str
) -> None:
    answer = deliver(server, change.pop("payload", PUSH), **change)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]["message"]
    runs = requests.get(f"http://127.0.0.1:{server.port}/api/v1/dags/deploy/runs",
                        headers={"Authorization": "Bearer t0k3n"}, timeout=10).json()  # fmt: skip
    assert runs["data"] == []


def test_when_false_makes_no_run_and_unknown_webhooks_are_404(server: Server) -> None:
    answer = deliver(server, {**PUSH, "ref": "refs/heads/feature"})
    assert answer.status_code == 200 and answer.json()["data"]["run"] is None
    assert "when is false" in answer.json()["data"]["skipped"]
    url = f"http://127.0.0.1:{server.port}/api/v1/webhooks/deploy/nope"
    assert requests.post(url, data=b"{}", timeout=10).status_code == 404


def test_a_flood_is_bounded_with_retry_after(server: Server) -> None:
    statuses = [deliver(server, {**PUSH, "ref": "other"}).status_code for _ in range(40)]
    assert statuses.count(200) >= 20 and 429 in statuses
    limited = deliver(server, PUSH)
    if limited.status_code == 429:
        assert int(limited.headers["Retry-After"]) >= 1


def test_a_body_over_the_cap_is_refused_before_it_is_read(server: Server) -> None:
    answer = deliver(server, None, raw=b"[" + b"1," * 600_000 + b"1]")
    assert answer.status_code == 413
