"""Runs started by asset updates through ``pipeline-core serve`` and ``requests``: a task's
outlets and updates posted from outside satisfy a consumer's condition, each satisfied
condition makes one run that names the updates it consumed, a repeated idempotency key makes
nothing, a paused consumer's updates wait, and ``collapse`` merges what arrives meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline_core.store import open_store
from pipeline_core.store.types import RunQuery
from tests.conftest import poll_until
from tests.test_serve_faults import Server, write_dag

pytestmark = pytest.mark.slow
PRODUCER = """
dag_id: producer
tasks:
  refresh:
    type: python
    callable: "tests.fixtures:refresh"
    kwargs: {rows: 1200}
    outlets: ["db://warehouse/orders", "s3://lake/{{ ds }}/orders"]
"""
CONSUMER = """
dag_id: consumer
schedule: {assets: "db://warehouse/orders & (customers | refunds)"}
tasks:
  report: {type: noop}
"""
EITHER = """
dag_id: either
schedule: {assets: "a | b"}
tasks:
  t: {type: noop}
"""
COLLAPSED = """
dag_id: collapsed
schedule: {assets: "c", collapse: true}
tasks:
  wait: {type: sensor, file: "FOLDER/go", poke_interval: 0.05}
"""


def api(server: Server, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    answer = requests.request(
        method, f"http://127.0.0.1:{server.port}/api/v1{path}", timeout=30, **kw
    )
    return answer.status_code, answer.json()


def runs_of(server: Server, dag_id: str) -> list[dict[str, Any]]:
    return api(server, "GET", f"/dags/{dag_id}/runs?limit=100")[1]["data"]


def post(server: Server, uri: str, **kw: Any) -> tuple[int, Any]:
    return api(server, "POST", "/assets/events", json={"uri": uri, **kw})


@pytest.fixture
def server(tmp_path: Path) -> Any:
    folder = tmp_path / "dags"
    for name, text in (("producer", PRODUCER), ("consumer", CONSUMER), ("either", EITHER),
                       ("collapsed", COLLAPSED.replace("FOLDER", str(tmp_path)))):  # fmt: skip
        write_dag(folder, text, name)
    started = Server(f"sqlite:///{tmp_path / 'a.db'}", folder, tmp_path / "serve.log")
    for dag_id in ("producer", "consumer", "either", "collapsed"):
        api(started, "PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    yield started
    (tmp_path / "go").write_text("")
    started.stop()


def test_a_producer_and_an_outside_update_start_the_consumer_once(server: Server) -> None:
    status, body = api(server, "POST", "/dags/producer/runs", json={"run_id": "p1"})
    assert status == 201, body
    api(server, "GET", "/dags/producer/runs/p1/wait?timeout=30")
    status, body = api(server, "GET", "/assets/events?uri=db://warehouse/orders")
    (made,) = body["data"]
    assert made["extra"] == {"rows": 1200} and made["source"]["task_id"] == "refresh"
    assert runs_of(server, "consumer") == []  # customers or refunds still missing
    status, body = post(server, "refunds", extra={"n": 3})
    assert status == 201 and body["data"]["uri"] == "refunds"
    poll_until(lambda: len(runs_of(server, "consumer")) == 1)
    (run,) = runs_of(server, "consumer")
    assert (
        run["run_type"] == "asset_triggered"
        and run["run_id"] == f"asset_triggered__{body['data']['id']}"
    )
    consumed = [a["uri"] for a in run["conf"]["triggering_assets"]]
    assert consumed == ["db://warehouse/orders", "refunds"]
    assert (
        api(server, "GET", f"/dags/consumer/runs/{run['run_id']}/wait?timeout=30")[1]["data"][
            "state"
        ]
        == "success"
    )
    post(server, "customers")  # orders was consumed: nothing until it is updated again
    status, body = api(server, "GET", "/assets")
    assets = {a["uri"]: a for a in body["data"]}
    assert assets["db://warehouse/orders"]["producers"] == ["producer.refresh"]
    assert assets["refunds"]["consumers"] == ["consumer"] and assets["refunds"]["updates"] == 1
    assert runs_of(server, "consumer")[0]["run_id"] == run["run_id"]


def test_every_update_counts_and_a_repeated_key_counts_once(server: Server) -> None:
    for uri in ("a", "b", "a"):
        assert post(server, uri)[0] == 201
    first = post(server, "b", idempotency_key="delivery-1")
    again = requests.post(f"http://127.0.0.1:{server.port}/api/v1/assets/events",
                          json={"uri": "b"}, headers={"Idempotency-Key": "delivery-1"}, timeout=30)  # fmt: skip
    assert first[0] == 201 and again.status_code == 200
    assert again.json()["data"]["id"] == first[1]["data"]["id"]
    poll_until(lambda: len(runs_of(server, "either")) == 4)
    ids = sorted(int(r["run_id"].rsplit("__", 1)[1]) for r in runs_of(server, "either"))
    assert len(set(ids)) == 4


def test_a_paused_consumer_keeps_its_updates_and_collapse_merges_them(
    server: Server, tmp_path: Path
) -> None:
    api(server, "PATCH", "/dags/either", json={"is_paused": True})
    post(server, "a")
    post(server, "b")
    _status, body = api(server, "GET", "/dags/either/runs")
    assert body["data"] == []
    api(server, "PATCH", "/dags/either", json={"is_paused": False})
    poll_until(lambda: len(runs_of(server, "either")) == 2)
    post(server, "c")
    poll_until(lambda: len(runs_of(server, "collapsed")) == 1)  # it waits for the file "go"
    for _ in range(3):
        post(server, "c")
    _, body = api(server, "GET", "/assets/events?uri=c")
    assert body["meta"]["total"] == 4 and len(runs_of(server, "collapsed")) == 1
    (tmp_path / "go").write_text("")  # the first run ends: the three updates make one run
    poll_until(lambda: len(runs_of(server, "collapsed")) == 2)
    second, first = runs_of(server, "collapsed")
    assert len(first["conf"]["triggering_assets"]) == 1
    assert len(second["conf"]["triggering_assets"]) == 3


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"uri": "a b"}, 400, "uri"),
        ({"uri": ""}, 400, "uri"),
        ({}, 400, "uri"),
        ({"uri": "a", "extra": [1]}, 400, "extra"),
        ({"uri": "a", "nope": 1}, 400, "nope"),
    ],
)
def test_bad_updates_are_refused(server: Server, body: Any, status: int, message: str) -> None:
    got, answer = api(server, "POST", "/assets/events", json=body)
    assert got == status and message in answer["error"]["message"]


def test_kill_9_while_updates_pour_in_makes_one_run_per_update(tmp_path: Path) -> None:
    """Updates from two senders as fast as they go (hundreds a second); the server is
    killed in the middle and restarted: every recorded update makes exactly one run, none
    is lost or doubled."""
    folder = tmp_path / "dags"
    write_dag(folder, "dag_id: each\nschedule: {assets: a}\ntasks: {t: {type: noop}}\n", "each")
    db = f"sqlite:///{tmp_path / 'k.db'}"
    log = tmp_path / "serve.log"
    server = Server(db, folder, log)
    api(server, "PATCH", "/dags/each", json={"is_paused": False})
    url = f"http://127.0.0.1:{server.port}/api/v1/assets/events"
    sent: list[int] = []
    stop = threading.Event()

    def sender() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    answer = session.post(url, json={"uri": "a"}, timeout=5)
                    sent.append(answer.status_code)
                except requests.RequestException:
                    return  # the server is gone

    senders = [threading.Thread(target=sender) for _ in range(2)]
    for thread in senders:
        thread.start()
    poll_until(lambda: len(sent) >= 150, timeout=30)
    server.kill_group()
    stop.set()
    for thread in senders:
        thread.join(10)
    server = Server(db, folder, log)
    try:
        store = open_store(db)
        recorded = store.assets.list_updates("a", limit=1).total
        assert recorded >= sent.count(201) > 0

        def runs() -> int:
            return store.runs.query_runs(RunQuery(dag_id="each", limit=0)).total

        poll_until(lambda: runs() == recorded, timeout=60)
        assert store.assets.waiting("each") == []
        page = store.runs.query_runs(RunQuery(dag_id="each", limit=100_000))
        consumed = [a["id"] for r in page.items for a in r.conf["triggering_assets"]]
        assert sorted(consumed) == sorted(
            u.id for u in store.assets.list_updates("a", limit=100_000).items
        )
        store.close()
    finally:
        server.stop()


def test_the_client_and_the_command_line_post_and_list(server: Server) -> None:
    from pipeline_core.client import Client
    from tests.test_remote_cli import cli

    url = f"http://127.0.0.1:{server.port}"
    with Client(url) as client:
        made = client.assets.post("refunds", {"n": 1}, idempotency_key="x-1")
        assert client.assets.post("refunds", idempotency_key="x-1")["id"] == made["id"]
        assert [u["id"] for u in client.assets.events("refunds")] == [made["id"]]
    done = cli(url, "assets", "post", "customers", "--extra", '{"rows": 2}')
    assert done.returncode == 0 and "of customers recorded" in done.stdout, done.stderr
    done = cli(url, "assets", "post", "customers", "--extra", "[1]")
    assert done.returncode == 3 and "--extra must be a JSON object" in done.stderr
    done = cli(url, "assets", "list")
    assert done.returncode == 0 and "db://warehouse/orders" in done.stdout
    assert "producer.refresh" in done.stdout and "consumer" in done.stdout
    done = cli(url, "assets", "events", "--uri", "customers", "--output", "json")
    assert done.returncode == 0 and '"rows": 2' in done.stdout
