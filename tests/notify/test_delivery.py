"""Notifications end to end through ``pipeline-core serve`` and a real receiver: every way a
try can end notifies exactly once per rule, a ``kill -9`` of the server loses nothing and
repeats nothing, a deadline missed across a restart fires once, and a receiver that is down
for 20 s gets every notification when it returns, none twice."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from collections import Counter
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import poll_until
from tests.notify.receivers import Received, Receiver
from tests.test_serve_faults import Server, write_dag

pytestmark = pytest.mark.slow
T = "tests.fixtures"
SECRET = "s3cret-for-signing"


def settled(server: Server, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The server's notifications once ``count`` of them exist and none is pending."""
    items: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal items
        items = server.call("GET", "/notifications?limit=500")["data"]
        return len(items) >= count and all(n["state"] != "pending" for n in items)

    poll_until(done, timeout=timeout)
    return items


def kinds(received: list[Received]) -> Counter[tuple[str, str | None]]:
    """The kinds of the notifications received, each id once (a delivery cut by a kill -9
    before it was recorded comes again after the restart, with the same id)."""
    unique = {r.delivery: r for r in received}.values()
    return Counter((r.json["event"], r.json.get("task_id")) for r in unique)


def test_every_ending_of_a_try_notifies_once_signed(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    receiver = Receiver().start()
    hook = f"{{url: '{receiver.url}/hook', secret: '${{env:HOOK_SECRET}}'}}"
    folder = tmp_path / "dags"
    write_dag(
        folder,
        f"""
        dag_id: faults
        notify:
          - {{on: [run_failed, run_cancelled], webhook: {hook}}}
        default_args:
          notify: [{{on: [task_failed], webhook: {hook}}}]
        tasks:
          exits: {{type: python, callable: "os:_exit", kwargs: {{status: 3}}}}
          sigkill: {{type: python, callable: "{T}:kill_self", kwargs: {{signal_number: 9}}}}
          hog: {{type: python, callable: "{T}:hog_memory", kwargs: {{megabytes: 4096}},
                 memory_limit: 256MiB}}
          hang: {{type: python, callable: "{T}:spin", timeout: 1s}}
        """,
    )
    write_dag(
        folder,
        f"""
        dag_id: spinner
        notify: [{{on: [run_cancelled, run_failed, task_failed], webhook: {hook}}}]
        tasks:
          hang: {{type: python, callable: "{T}:spin"}}
          never: {{type: noop, depends_on: [hang]}}
        """,
        "spinner",
    )
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    server = Server(db, folder, tmp_path / "serve.log", "--grace", "1")
    try:
        run = server.call("POST", "/dags/faults/runs", {})["data"]["run_id"]
        got = receiver.wait_for(5, timeout=60)
        errors = {r.json.get("task_id"): r.json["error"] for r in got}
        assert errors["exits"] == "worker exited with code 3"
        assert errors["sigkill"] == "worker killed by signal 9 (out of memory?)"
        assert errors["hog"] == "memory_limit 256MiB exceeded (MemoryError)"
        assert errors["hang"] == "timed out after 1s"
        assert "task 'exits' failed: worker exited with code 3" in errors[None]
        for request in got:
            expected = hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
            assert request.headers["X-Pipeline-Core-Signature"] == f"sha256={expected}"
            assert request.json["run_id"] == run
            link = f"http://127.0.0.1:{server.port}/ui/dags/faults/runs/{quote(run, safe='')}"
            assert request.json["url"] == link
        # Cancel through the API: the run's notification, and the killed try's.
        spinning = server.call("POST", "/dags/spinner/runs", {})["data"]["run_id"]
        poll_until(
            lambda: (
                server.call("GET", f"/dags/spinner/runs/{spinning}/tasks/hang")["data"]["state"]
                == "running"
            )
        )
        server.call("DELETE", f"/dags/spinner/runs/{spinning}")
        # Marks through the API (a task) and the command line (a run).
        marked = server.call("POST", "/dags/spinner/runs", {})["data"]["run_id"]
        task = f"/dags/spinner/runs/{marked}/tasks/hang"
        poll_until(lambda: server.call("GET", task)["data"]["state"] == "running")
        server.call("PATCH", task, {"state": "failed"})
        by_cli = server.call("POST", "/dags/spinner/runs", {})["data"]["run_id"]
        poll_until(
            lambda: (
                server.call("GET", f"/dags/spinner/runs/{by_cli}/tasks/hang")["data"]["state"]
                == "running"
            )
        )
        subprocess.run(
            [sys.executable, "-m", "pipeline_core", "runs", "mark", "spinner", by_cli, "failed",
             "--server", f"http://127.0.0.1:{server.port}"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        items = settled(server, 9)
        received = receiver.wait_for(len(items))
        assert len(items) == len(received)
        assert len({r.delivery for r in received}) == len(received)  # no id twice
        assert {n["state"] for n in items} == {"delivered"}
        by_run = Counter(
            (r.json["run_id"], r.json["event"], r.json.get("task_id")) for r in received
        )
        assert by_run[(spinning, "run_cancelled", None)] == 1
        assert by_run[(marked, "task_failed", "hang")] == 1
        assert by_run[(marked, "run_failed", None)] == 1
        assert by_run[(by_cli, "run_failed", None)] == 1
        assert all(count == 1 for count in by_run.values()), by_run
    finally:
        server.stop()
        receiver.stop()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


ORPHAN = """
dag_id: orphan
deadline: 3s
notify:
  - {{on: [task_retrying, run_succeeded, run_failed, deadline_missed], webhook: {{url: '{url}'}}}}
tasks:
  work:
    type: shell
    command: "echo $$ > {pids}/try{{{{ try_number }}}}; sleep 6"
    retries: 2
    retry_delay: 0s
"""


def test_kill_9_of_serve_loses_no_notification_and_a_deadline_fires_once(tmp_path):
    receiver = Receiver().start()
    folder, pids = tmp_path / "dags", tmp_path / "pids"
    pids.mkdir()
    write_dag(folder, ORPHAN.format(url=receiver.url, pids=pids), "orphan")
    db, log = f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "serve.log"
    server = Server(db, folder, log)
    try:
        run = server.call("POST", "/dags/orphan/runs", {})["data"]["run_id"]
        poll_until((pids / "try1").exists, timeout=30)
        server.kill_group()  # before the deadline: it is the next server's to keep
        server = Server(db, folder, log)
        # The orphaned try is failed (and retried) by the restarted server; the deadline,
        # armed by the first server, fires in the second one.
        poll_until(lambda: "deadline_missed" in {r.json["event"] for r in receiver.received}, 30)
        missed = next(r for r in receiver.received if r.json["event"] == "deadline_missed")
        assert missed.json["run_id"] == run
        poll_until((pids / "try2").exists, timeout=30)
        poll_until(
            lambda: (
                server.call("GET", f"/notifications/{missed.delivery}")["data"]["state"]
                == "delivered"
            )
        )
        server.kill_group()  # after it fired: the restart must not fire it again
        server = Server(db, folder, log)
        items = settled(server, 4, timeout=90)
        received = receiver.wait_for(len(items))
        assert kinds(received) == {
            ("task_retrying", "work"): 2,  # each killed try, once
            ("deadline_missed", None): 1,
            ("run_succeeded", None): 1,
        }
        unique = {r.delivery: r for r in received}.values()
        retried = sorted(r.json["try_number"] for r in unique if r.json["event"] == "task_retrying")
        assert retried == [1, 2]
        assert len(unique) == len(items) == 4
    finally:
        server.stop()
        receiver.stop()


def test_a_receiver_down_for_20_s_gets_everything_when_it_returns(tmp_path):
    receiver = Receiver()  # not listening yet: every attempt is refused
    folder = tmp_path / "dags"
    tasks = "".join(f"  t{i}: {{type: shell, command: 'exit 1'}}\n" for i in range(10))
    write_dag(
        folder,
        f"dag_id: many\nnotify: [{{on: [task_failed, run_failed], webhook: '{receiver.url}'}}]\n"
        f"tasks:\n{tasks}",
        "many",
    )
    server = Server(
        f"sqlite:///{tmp_path / 'db.sqlite'}", folder, tmp_path / "serve.log",
        "--notify-backoff", "0.2", "--notify-max-backoff", "2", "--notify-attempts", "40",
    )  # fmt: skip
    try:
        server.call("POST", "/dags/many/runs", {})
        retrying = poll_until_value(
            lambda: [
                n
                for n in server.call("GET", "/notifications?state=pending&limit=100")["data"]
                if n["attempts"] >= 2
            ],
            count=11,
        )
        assert all("refused" in (n["last_error"] or "").lower() for n in retrying), retrying
        # Redelivery of a notification still being delivered is refused, not doubled.
        busy = retrying[0]["id"]
        with pytest.raises(Exception, match="409"):
            server.call("POST", f"/notifications/{busy}/redeliver")
        poll_until(lambda: refused_for(server, busy) >= OUTAGE, timeout=OUTAGE + 15)
        assert all(n["state"] == "pending" for n in server.call("GET", "/notifications")["data"])
        receiver.start()
        items = settled(server, 11, timeout=30)
        received = receiver.wait_for(11)
        assert {n["state"] for n in items} == {"delivered"}
        assert len({r.delivery for r in received}) == 11 == len(received)
        assert all(n["attempts"] >= 3 for n in items)
        # A redelivery asked for keeps the id: a receiver that drops repeats sees it once.
        delivered_history = server.call("GET", f"/notifications/{busy}")["data"]["history"]
        again = server.call("POST", f"/notifications/{busy}/redeliver")["data"]
        assert again["id"] == busy
        repeat = receiver.wait_for(12)[-1]
        assert repeat.delivery == busy
        history = poll_until_value(
            lambda: server.call("GET", f"/notifications/{busy}")["data"]["history"],
            count=len(delivered_history) + 1,
        )
        assert [a["status"] for a in history][-2:] == [200, 200]  # delivered, then again
        assert history[0]["status"] is None and "refused" in history[0]["error"].lower()
    finally:
        server.stop()
        receiver.stop()


OUTAGE = 20.0  # seconds the receiver is down, as the dispatcher saw it


def refused_for(server: Server, notification_id: str) -> float:
    """Seconds from the notification's first attempt to its latest, every one refused."""
    history = server.call("GET", f"/notifications/{notification_id}")["data"]["history"]
    if not history or any(a["status"] is not None for a in history):
        return 0.0
    first, last = (datetime.fromisoformat(history[i]["at"]) for i in (0, -1))
    return (last - first).total_seconds()


def poll_until_value(read: Any, count: int, timeout: float = 30) -> list[Any]:
    value: list[Any] = []

    def enough() -> bool:
        nonlocal value
        value = read()
        return len(value) >= count

    poll_until(enough, timeout=timeout)
    return value
