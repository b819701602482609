"""A secret never leaves ``serve``: a DAG whose tasks print, log, return and raise a stored
secret (plain, quoted, JSON-escaped and inside longer words) and whose failures notify a
receiver — then every API answer about the run, its logs and XCom, the event stream, the
notifications and what the receiver got, the raw database and every other file the server
wrote are searched for the secret's plain text: zero hits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from pipeline_core.credentials.cipher import KEY_ENV, Cipher
from tests.api.conftest import SSEClient
from tests.conftest import poll_until
from tests.notify.receivers import Receiver
from tests.test_remote_cli import Server

SECRET = 'Zq8-"leaky"\\pass/ä'
API_KEY = "sk_live_0123456789abcdef"


def dag(receiver: str) -> str:
    return f"""
notify: [{{on: [task_failed, run_failed], webhook: '{receiver}/hook'}}]
tasks:
  returns:
    type: python
    callable: tests.fixtures:leak_secret
    kwargs: {{secret: "{{{{ var.api_key }}}}", fail: false}}
  raises:
    type: python
    callable: tests.fixtures:leak_secret
    kwargs: {{secret: "{{{{ conn.warehouse.password }}}}", fail: true}}
  echoes:
    type: shell
    command: 'echo "key=$KEY pw=$PW"; echo "{{{{ var.api_key }}}}" >&2; exit 3'
    env: {{KEY: "{{{{ var.api_key }}}}", PW: "{{{{ conn.warehouse.password }}}}"}}
"""


def test_no_secret_leaves_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, Cipher.new_key())
    receiver = Receiver().start()
    server = Server(tmp_path)
    (server.folder / "leaky.yaml").write_text(dag(receiver.url))
    server.start()
    api = f"{server.url}/api/v1"
    stream: SSEClient | None = None
    try:
        requests.put(f"{api}/variables/api_key", json={"value": API_KEY}).raise_for_status()
        conn = {"conn_type": "postgres", "host": "db", "login": "etl", "password": SECRET}
        requests.put(f"{api}/connections/warehouse", json=conn).raise_for_status()
        stream = SSEClient(server.port, "/api/v1/events?last_event_id=0")
        made = requests.post(f"{api}/dags/leaky/runs", json={"run_id": "leak"})
        assert made.status_code == 201

        def finished() -> bool:
            state = requests.get(f"{api}/dags/leaky/runs/leak").json()["data"]["state"]
            return state in ("success", "failed")

        poll_until(finished, timeout=60)
        answers = [requests.get(f"{api}/dags/leaky/runs/leak").text,
                   requests.get(f"{api}/dags/leaky/runs/leak/tasks").text,
                   requests.get(f"{api}/variables").text, requests.get(f"{api}/connections").text,
                   requests.get(f"{api}/notifications?dag_id=leaky").text]  # fmt: skip
        for task in ("returns", "raises", "echoes"):
            base = f"{api}/dags/leaky/runs/leak/tasks/{task}"
            answers += [requests.get(base).text, requests.get(f"{base}/logs").text,
                        requests.get(f"{base}/xcom").text]  # fmt: skip
        logs = "".join(answers)
        assert logs.count("***") >= 8, logs
        delivered = receiver.wait_for(3)  # two tasks failed, then the run
        events = []
        while not any(e["type"] == "run.state_changed" and e["new_state"] == "failed"
                      for e in events):  # fmt: skip
            events += stream.events(1)
        texts = [*answers, json.dumps(events), *(r.body.decode() for r in delivered)]
        escaped = json.dumps(SECRET)[1:-1], json.dumps(SECRET, ensure_ascii=False)[1:-1]
        forms = (SECRET, API_KEY, *escaped)
        for text in texts:
            for form in forms:
                assert form not in text, (form, text[:2000])
        assert any("could not log in with '***'" in t for t in texts)
    finally:
        if stream is not None:
            stream.close()
        server.stop()
        receiver.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for form in (SECRET, API_KEY):
                assert form.encode() not in data, (path, form)
