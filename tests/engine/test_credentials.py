"""Variables and connections reach tasks in every executor mode (templates and ``context``,
environment overrides first), and no secret a try can see leaves it unmasked: not in its
log, its XCom, its error, the events — nor anywhere in the raw database file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_core.credentials.cipher import Cipher
from pipeline_core.credentials.connections import Connection
from pipeline_core.model import TaskKey, TriggerRequest
from pipeline_core.state import RunState
from pipeline_core.store.types import EventQuery
from tests.engine.conftest import dag_from
from tests.engine.test_executors import MODES, log_text

T = "tests.fixtures"
PASSWORD = "s3cr3t-Pässword/42"
TOKEN = "tok_9f8e7d6c5b4a"


@pytest.fixture
def credentials(harness):  # type: ignore[no-untyped-def]
    store = harness.store.credentials
    store.cipher = Cipher([Cipher.new_key()])
    store.set_variable("greeting", "hello")
    store.set_variable("settings", {"region": "eu-west-1", "sizes": [1, 2]})
    store.set_variable("api_token", TOKEN)
    conn = Connection("db", "postgresql", "db.internal", 5433, "app", PASSWORD, "sales",
                      {"sslmode": "require"})  # fmt: skip
    store.set_connection(conn)
    return store


@pytest.mark.parametrize("mode", MODES)
def test_templates_and_context_read_variables_and_connections(harness, credentials, mode):
    dag = dag_from(
        f"""
        tasks:
          use:
            type: python
            callable: "{T}:use_credentials"
            kwargs:
              shown: "{{{{ var.greeting }}}} from {{{{ var.settings.region }}}} via \\
        {{{{ conn.db.login }}}}@{{{{ conn.db.host }}}}/{{{{ conn.db.schema }}}}?\\
        {{{{ conn.db.extra.sslmode }}}}"
              port: "{{{{ conn.db.port }}}}"
            executor: {mode}
          shell:
            type: shell
            command: 'echo "$URI|$SIZE"'
            env: {{URI: "{{{{ conn.db.uri }}}}", SIZE: "{{{{ var.settings.sizes.1 }}}}"}}
            executor: {mode}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS, harness.states(run)
    got = harness.store.task_data.get_xcom(TaskKey("t", run.run_id, "use"), "return_value")
    assert got.value == {
        "shown": "hello from eu-west-1 via app@db.internal/sales?require",
        "port": 5433,
        "region": "eu-west-1",
        "host": "db.internal",
        "missing": "fallback",
        "password": "***",
    }
    shell = harness.store.task_data.get_xcom(TaskKey("t", run.run_id, "shell"), "return_value")
    assert shell.value == "postgresql://app:***@db.internal:5433/sales?sslmode=require|2"


@pytest.mark.parametrize("mode", ["thread", "worker"])
def test_environment_overrides_win_and_their_secrets_are_masked(
    harness, credentials, mode, monkeypatch
):
    monkeypatch.setenv("PIPELINE_CORE_VAR_GREETING", "from the environment")
    monkeypatch.setenv("PIPELINE_CORE_VAR_SETTINGS", '{"region": "us-east-2", "sizes": []}')
    monkeypatch.setenv("PIPELINE_CORE_CONN_DB", "mysql://root:env-pass-777@envhost:3306/x")
    dag = dag_from(
        f"""
        tasks:
          use:
            type: python
            callable: "{T}:use_credentials"
            kwargs: {{shown: "{{{{ var.greeting }}}} {{{{ conn.db.password }}}}", port: 1}}
            executor: {mode}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS, harness.states(run)
    got = harness.store.task_data.get_xcom(TaskKey("t", run.run_id, "use"), "return_value")
    assert got.value["shown"] == "from the environment ***"
    assert (got.value["region"], got.value["host"], got.value["password"]) == (
        "us-east-2", "envhost", "***"
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["thread", "worker"])
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("{{ var.nope }}", "variable 'nope' is not set (neither in the store nor "
                           "PIPELINE_CORE_VAR_NOPE)"),
        ("{{ var.settings.nope }}", "var.settings has no 'nope'"),
        ("{{ conn.nope.host }}", "connection 'nope' is not set"),
        ("{{ conn.db.extra.nope }}", "connection 'db' has no extra 'nope'"),
    ],
)  # fmt: skip
def test_a_missing_variable_or_connection_fails_the_try_naming_it(
    harness, credentials, mode, setting, message
):
    dag = dag_from(
        f"""
        tasks:
          use: {{type: python, callable: "{T}:value_of", kwargs: {{value: "{setting}"}},
                executor: {mode}}}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert message in harness.ti(run, "use").error


def test_a_missing_variable_asked_through_the_context_fails_naming_it(harness, credentials):
    dag = dag_from(
        f"""
        tasks:
          use: {{type: python, callable: "{T}:use_credentials",
                kwargs: {{shown: x, port: 1}}, executor: worker}}
        """
    )
    harness.store.credentials.delete_connection("db")
    engine = harness.start(dag, default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert "connection 'db' is not set" in harness.ti(run, "use").error


@pytest.mark.parametrize("mode", MODES)
def test_a_secret_never_leaves_a_try_unmasked(harness, credentials, mode, tmp_path: Path):
    dag = dag_from(
        f"""
        tasks:
          returns:
            type: python
            callable: "{T}:leak_secret"
            kwargs: {{secret: "{{{{ var.api_token }}}}", fail: false}}
            executor: {mode}
          raises:
            type: python
            callable: "{T}:leak_secret"
            kwargs: {{secret: "{{{{ conn.db.password }}}}", fail: true}}
            executor: {mode}
          echoes:
            type: shell
            command: 'echo "pw=$PW"; echo "$PW" >&2; printf %s "$PW" | od -c | head -1'
            env: {{PW: "{{{{ conn.db.password }}}}"}}
            executor: {mode}
        """
    )
    engine = harness.start(dag, default_executor=mode)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.states(run) == {"returns": "success", "raises": "failed", "echoes": "success"}
    returns = log_text(harness, run, "returns")
    assert returns.count("***") >= 5 and TOKEN not in returns
    assert "prefix***suffix" in returns
    xcom = harness.store.task_data.get_xcom(TaskKey("t", run.run_id, "returns"), "leak").value
    assert xcom == {"nested": ["***", "x***y"], "***": 1}
    error = harness.ti(run, "raises").error
    assert error == "RuntimeError: could not log in with '***'"
    assert "pw=***" in log_text(harness, run, "echoes")
    events = harness.store.events.read_events(EventQuery(run_id=run.run_id))
    said = json.dumps([e.payload for e in events])
    assert "could not log in with '***'" in said and TOKEN not in said and PASSWORD not in said
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (TOKEN, PASSWORD):
                assert secret.encode() not in data, (path, secret)
