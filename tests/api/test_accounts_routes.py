"""Accounts and roles through the API: a role x route matrix over every operation of the
OpenAPI document, DAG scope by tag, expiry, revocation (also of an open event stream), the
old ``--auth-token`` as an admin, and the audit trail with the actor on the events a person
caused."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline_core.api.routes.builder import api_document
from pipeline_core.api.server import APIServer
from pipeline_core.api.types import APIServerOptions
from pipeline_core.engine import Engine
from pipeline_core.model import TriggerRequest, utcnow
from pipeline_core.scheduler.sync import DagSync
from pipeline_core.state import FINISHED_RUN_STATES
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery
from tests.api.conftest import SSEClient
from tests.api.inprocess import AppClient
from tests.conftest import poll_until

LEGACY = "legacy-admin-token-123"
ADMIN_ONLY = {
    "create_pool", "patch_pool", "delete_pool", "put_variable", "delete_variable",
    "put_connection", "delete_connection", "list_tokens", "create_token", "revoke_token",
    "list_audit",
}  # fmt: skip
PUBLIC = {"get_health", "get_version", "get_openapi", "deliver_webhook"}
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def expected_role(operation_id: str, method: str) -> str:
    if operation_id in PUBLIC:
        return "public"
    if operation_id in ADMIN_ONLY:
        return "admin"
    return "viewer" if method == "get" else "operator"


class Setup:
    def __init__(self, tmp_path: Path, auth_token: str | None = None) -> None:
        folder = tmp_path / "dags"
        folder.mkdir()
        for dag_id, tag in (("a_dag", "team-a"), ("b_dag", "team-b")):
            (folder / f"{dag_id}.yaml").write_text(
                textwrap.dedent(f"tags: [{tag}]\ntasks:\n  t: {{type: noop}}\n")
            )
        self.store = open_store(f"sqlite:///{tmp_path / 'acc.db'}")
        self.engine = Engine(self.store).start()
        self.engine.set_dags(DagSync(self.store, folder).refresh())
        self.server = APIServer(
            APIServerOptions(store=self.store, port=0, control=self.engine, auth_token=auth_token)
        ).start()
        self.tokens = {role: self.store.accounts.create_token(role, role)[1] for role in RANK}
        self.tokens["scoped"] = self.store.accounts.create_token(
            "scoped", "operator", dags_tag="team-a"
        )[1]
        self.runs = {d: self.finished_run(d) for d in ("a_dag", "b_dag")}

    def finished_run(self, dag_id: str) -> str:
        run = self.engine.trigger(TriggerRequest(dag_id, run_id=f"r-{dag_id}"))
        poll_until(lambda: self.store.runs.get_run(dag_id, run.run_id).state in FINISHED_RUN_STATES)
        return run.run_id

    def as_(self, who: str) -> AppClient:
        return AppClient(self.server, self.tokens.get(who, who))

    def close(self) -> None:
        self.server.stop()
        self.engine.stop(grace=0)
        self.store.close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.close()


def concrete(path: str, run_id: str) -> str:
    values = {"dag_id": "a_dag", "run_id": run_id, "task_id": "t", "map_index": "0",
              "key": "k", "conn_id": "c", "name": "nobody", "notification_id": "ntf-1-0",
              "backfill_id": "1", "version": "abcdef"}  # fmt: skip
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in api_document()["paths"].items()
        for method, op in item.items()
        if op["operationId"] != "stream_events"  # a stream: tested over a socket below
    ]


def test_every_operation_declares_the_role_it_needs() -> None:
    found = {(m, p): op["x-required-role"] for m, p, op in operations()}
    assert len(found) > 50
    for method, path, op in operations():
        assert op["x-required-role"] == expected_role(op["operationId"], method), (method, path)


def test_the_role_matrix_holds_for_every_operation(setup: Setup) -> None:
    run_id = setup.runs["a_dag"]
    for method, path, op in operations():
        needed = expected_role(op["operationId"], method)
        url = concrete(path, run_id)
        body = {} if "requestBody" in op else None
        for role, rank in RANK.items():
            status, _, answer = setup.as_(role).request(method.upper(), url, body)
            assert status != 401, (role, method, url, answer)
            if needed != "public" and rank < RANK[needed]:
                assert status == 403, (role, method, url, status)
                assert f"needs the {needed} role" in answer["error"]["message"]
                assert f"has the {role} role" in answer["error"]["message"]
            else:
                assert status != 403, (role, method, url, answer)
        if needed != "public":
            status, headers, _ = AppClient(setup.server).request(method.upper(), url, body)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")


def test_a_scoped_token_sees_and_acts_on_the_dags_of_its_tag_only(setup: Setup) -> None:
    scoped = setup.as_("scoped")
    status, _, listed = scoped.request("GET", "/api/v1/dags")
    assert status == 200 and [d["dag_id"] for d in listed["data"]] == ["a_dag"]
    assert scoped.request("GET", "/api/v1/dags?tags=team-b")[2]["data"] == []
    assert scoped.request("GET", "/api/v1/dags/a_dag")[0] == 200
    for method, url in (("GET", "/api/v1/dags/b_dag"), ("POST", "/api/v1/dags/b_dag/runs"),
                        ("GET", f"/api/v1/dags/b_dag/runs/{setup.runs['b_dag']}")):  # fmt: skip
        status, _, answer = scoped.request(method, url, {} if method == "POST" else None)
        assert status == 404 and answer["error"]["message"] == "no DAG 'b_dag'", url
    assert scoped.request("POST", "/api/v1/dags/a_dag/runs", {})[0] == 201
    status, _, answer = scoped.request("GET", "/api/v1/notifications")
    assert status == 403 and "scoped to the DAGs tagged 'team-a'" in answer["error"]["message"]
    assert setup.as_("admin").request("GET", "/api/v1/dags")[2]["meta"]["total"] == 2


def test_an_expired_or_revoked_or_unknown_token_is_refused_naming_why(setup: Setup) -> None:
    past = utcnow() - timedelta(minutes=1)
    _, old = setup.store.accounts.create_token("old", "admin", expires_at=past)
    status, _, answer = AppClient(setup.server, old).request("GET", "/api/v1/dags")
    assert status == 401 and answer["error"]["message"].startswith("token 'old' expired at ")
    setup.store.accounts.revoke_token("viewer")
    setup.server.app.gate.forget()
    status, _, answer = setup.as_("viewer").request("GET", "/api/v1/dags")
    assert status == 401 and "token 'viewer' was revoked at" in answer["error"]["message"]
    status, _, answer = AppClient(setup.server, "pct_made-up").request("GET", "/api/v1/dags")
    assert status == 401 and answer["error"]["message"] == "the bearer token is not valid"


def test_tokens_are_made_listed_and_revoked_by_an_admin(setup: Setup) -> None:
    admin = setup.as_("admin")
    status, headers, made = admin.request(
        "POST", "/api/v1/tokens", {"name": "ci", "role": "operator", "expires_in": "30d"}
    )
    assert status == 201 and headers["Location"] == "/api/v1/tokens/ci"
    plain = made["data"]["token"]
    assert AppClient(setup.server, plain).request("GET", "/api/v1/whoami")[2]["data"] == {
        "auth_required": True, "name": "ci", "role": "operator", "dags_tag": None,
        "expires_at": made["data"]["expires_at"],
    }  # fmt: skip
    listed = admin.request("GET", "/api/v1/tokens")[2]["data"]
    assert "token" not in json.dumps(listed).replace('"tokens', "")
    assert admin.request("POST", "/api/v1/tokens", {"name": "ci", "role": "admin"})[0] == 409
    assert admin.request("POST", "/api/v1/tokens", {"name": "x", "role": "root"})[0] == 400
    bad = admin.request("POST", "/api/v1/tokens", {"name": "x", "role": "admin",
                                                   "expires_in": "soon"})  # fmt: skip
    assert bad[0] == 400 and "expires_in" in bad[2]["error"]["message"]
    assert admin.request("DELETE", "/api/v1/tokens/ci")[0] == 200
    assert AppClient(setup.server, plain).request("GET", "/api/v1/whoami")[0] == 401
    assert admin.request("DELETE", "/api/v1/tokens/ci")[0] == 409
    with open(setup.store.url.removeprefix("sqlite:///"), "rb") as database:
        assert plain.encode() not in database.read()


def test_changes_are_audited_and_their_events_name_the_actor(setup: Setup) -> None:
    status, _, _ = setup.as_("operator").request(
        "POST", "/api/v1/dags/a_dag/runs", {"run_id": "by-hand"}, {"X-Request-ID": "req-42"}
    )
    assert status == 201
    setup.as_("viewer").request("POST", "/api/v1/dags/a_dag/runs", {})  # refused: audited too
    poll_until(lambda: setup.store.runs.get_run("a_dag", "by-hand").state in FINISHED_RUN_STATES)
    events = setup.store.events.read_events(EventQuery(run_id="by-hand"))
    assert events[0].payload["actor"] == "operator"  # the trigger's; the engine's own: none
    assert "actor" not in events[-1].payload
    assert setup.as_("viewer").request("GET", "/api/v1/audit")[0] == 403
    trail = setup.as_("admin").request("GET", "/api/v1/audit")[2]["data"]
    refused, accepted = trail[0], trail[1]
    assert (refused["actor"], refused["status"]) == ("viewer", 403)
    assert accepted["actor"] == "operator" and accepted["action"] == "trigger_run"
    assert accepted["target"] == "/api/v1/dags/a_dag/runs" and accepted["status"] == 201
    assert accepted["request_id"] == "req-42"
    only = setup.as_("admin").request("GET", "/api/v1/audit?actor=viewer")[2]
    assert only["meta"]["total"] == 1


def test_a_server_without_tokens_asks_for_none_until_one_is_made(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'open.db'}")
    server = APIServer(APIServerOptions(store=store, port=0)).start()
    try:
        who = AppClient(server).request("GET", "/api/v1/whoami")[2]["data"]
        assert who == {"auth_required": False, "name": None, "role": "admin",
                       "dags_tag": None, "expires_at": None}  # fmt: skip
        assert (
            AppClient(server).request("POST", "/api/v1/pools", {"name": "p", "slots": 1})[0] == 201
        )
        _, plain = store.accounts.create_token("first", "viewer")
        server.app.gate.forget()
        assert AppClient(server).request("GET", "/api/v1/dags")[0] == 401
        assert AppClient(server, plain).request("GET", "/api/v1/dags")[0] == 200
        assert store.accounts.list_audit().total == 0  # the open server's pool: no account
    finally:
        server.stop()
        store.close()


def test_the_old_auth_token_is_an_admin(tmp_path: Path) -> None:
    made = Setup(tmp_path, auth_token=LEGACY)
    try:
        legacy = AppClient(made.server, LEGACY)
        assert legacy.request("GET", "/api/v1/whoami")[2]["data"]["role"] == "admin"
        assert legacy.request("POST", "/api/v1/pools", {"name": "p", "slots": 2})[0] == 201
        assert made.as_("viewer").request("GET", "/api/v1/dags")[0] == 200
    finally:
        made.close()


def test_a_revoked_token_ends_its_open_event_stream(setup: Setup) -> None:
    port = setup.server.port

    def stream(who: str) -> SSEClient:
        return SSEClient(port, headers={"Authorization": f"Bearer {setup.tokens[who]}"})

    viewer, operator, scoped = stream("viewer"), stream("operator"), stream("scoped")
    try:
        follow_with(setup, viewer, operator, scoped)
    finally:
        for client in (viewer, operator, scoped):
            client.close()


def follow_with(setup: Setup, viewer: SSEClient, operator: SSEClient, scoped: SSEClient) -> None:
    port = setup.server.port
    assert viewer.status == operator.status == scoped.status == 200
    url = f"http://127.0.0.1:{port}/api/v1/tokens/viewer"
    answer = requests.delete(url, headers={"Authorization": f"Bearer {setup.tokens['admin']}"})
    assert answer.status_code == 200
    viewer.drain()  # returns once the server ends the stream (the socket would time out)
    setup.engine.trigger(TriggerRequest("b_dag", run_id="unseen"))
    setup.engine.trigger(TriggerRequest("a_dag", run_id="seen"))
    for client, shows_b in ((operator, True), (scoped, False)):
        found: list[dict[str, Any]] = []
        while not any(e.get("run_id") == "seen" for e in found):
            found += client.events(1)
        if shows_b:
            assert any(e.get("run_id") == "unseen" for e in found)
        else:
            assert {e.get("dag_id") for e in found} <= {"a_dag", None}
    assert operator.events(1)  # still open: only the revoked token's stream ended
