"""Idempotent triggers and held waits, against a real engine in both deployments."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request

import pytest
import requests

from tests.api.conftest import Client
from tests.api.engine_system import System, trigger
from tests.conftest import poll_until

#: Input checks that do not depend on where the engine runs: one deployment is enough.
ONE_PROCESS = pytest.mark.parametrize("system", ["one-process"], indirect=True)


def test_a_repeated_key_answers_the_same_run(system: System) -> None:
    body = {"conf": {"sha": "abc"}, "idempotency_key": "build-1"}
    first = trigger(system, "etl", body)
    assert first[0] == 201 and "idempotent_replay" not in first[2]["meta"]
    run_id = first[2]["data"]["run_id"]
    again = trigger(system, "etl", body)
    assert again[0] == 200 and again[2]["meta"]["idempotent_replay"] is True
    assert again[2]["data"]["run_id"] == run_id
    assert again[1]["Location"] == first[1]["Location"]
    # the header is the same key; a missing conf and {} are alike, null and missing too
    header = system.client.request(
        "POST",
        "/api/v1/dags/etl/runs",
        {"conf": {"sha": "abc"}, "note": None},
        headers={"Idempotency-Key": "build-1"},
    )
    assert header[0] == 200 and header[2]["data"]["run_id"] == run_id
    other = trigger(system, "etl", {"conf": {"sha": "def"}, "idempotency_key": "build-1"})
    assert other[0] == 409 and other[2]["error"]["code"] == "conflict"
    assert "'build-1'" in other[2]["error"]["message"]
    assert other[2]["error"]["details"] == {"idempotency_key": "build-1", "run_id": run_id}
    # keys are per DAG
    assert trigger(system, "flaky", {"idempotency_key": "build-1"})[0] == 201
    assert system.client.request("GET", "/api/v1/dags/etl/runs")[2]["meta"]["total"] == 1


@ONE_PROCESS
def test_bad_keys_are_refused(system: System) -> None:
    for headers, body, message in (
        ({"Idempotency-Key": ""}, {}, "1 to 255 printable ASCII"),
        ({"Idempotency-Key": "x" * 256}, {}, "1 to 255 printable ASCII"),
        ({}, {"idempotency_key": " padded "}, "1 to 255 printable ASCII"),
        ({}, {"idempotency_key": 7}, "'idempotency_key' must be a string"),
        ({"Idempotency-Key": "a"}, {"idempotency_key": "b"}, "differ"),
    ):
        status, _, answer = system.client.request(
            "POST", "/api/v1/dags/etl/runs", body, headers=headers
        )
        assert status == 400 and message in answer["error"]["message"], answer
    assert system.client.request("GET", "/api/v1/dags/etl/runs")[2]["meta"]["total"] == 0


def test_twenty_concurrent_identical_triggers_create_one_run(system: System) -> None:
    url = f"http://127.0.0.1:{system.server.port}/api/v1/dags/etl/runs"
    body = {"conf": {"sha": "c0ffee"}}

    def post(_: int) -> tuple[int, str]:
        answer = requests.post(url, json=body, headers={"Idempotency-Key": "deploy-42"}, timeout=30)
        return answer.status_code, answer.json()["data"]["run_id"]

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    assert sorted(status for status, _ in answers) == [200] * 19 + [201]
    assert len({run_id for _, run_id in answers}) == 1
    runs = system.client.request("GET", "/api/v1/dags/etl/runs")[2]
    assert runs["meta"]["total"] == 1


@ONE_PROCESS
def test_a_key_outlives_its_run_only_while_the_run_exists(system: System) -> None:
    run_id = trigger(system, "etl", {"idempotency_key": "k"})[2]["data"]["run_id"]
    system.wait_state("etl", run_id, {"success"})
    system.store.runs.delete_run("etl", run_id)
    again = trigger(system, "etl", {"idempotency_key": "k"})
    assert again[0] == 201 and "idempotent_replay" not in again[2]["meta"]


def test_wait_answers_when_the_run_ends(system: System) -> None:
    trigger(system, "etl", {"run_id": "w"})
    started = time.monotonic()
    status, _, body = system.client.request("GET", "/api/v1/dags/etl/runs/w/wait?timeout=30")
    assert status == 200 and body["data"]["state"] == "success"
    assert [t["state"] for t in body["data"]["task_instances"]] == ["success", "success"]
    assert time.monotonic() - started < 15
    # a finished run answers at once
    assert system.client.request("GET", "/api/v1/dags/etl/runs/w/wait")[0] == 200


@ONE_PROCESS
def test_wait_times_out_with_the_current_state(system: System) -> None:
    trigger(system, "slow", {"run_id": "s"})
    started = time.monotonic()
    status, _, body = system.client.request("GET", "/api/v1/dags/slow/runs/s/wait?timeout=0.5")
    assert 0.45 <= time.monotonic() - started < 5
    assert status == 408 and body["error"]["code"] == "wait_timeout"
    assert body["data"]["state"] in ("queued", "running")
    assert body["error"]["details"]["timeout"] == 0.5
    system.client.request("DELETE", "/api/v1/dags/slow/runs/s")


def test_wait_is_woken_by_the_end_not_a_timer(system: System) -> None:
    """Many held waits cost no thread each, and each is answered within 100 ms of the end
    (a cancel, here, so the end is a moment the test chooses)."""
    for i in range(20):
        trigger(system, "slow", {"run_id": f"s{i}"})
    url = f"http://127.0.0.1:{system.server.port}/api/v1/dags/slow/runs/{{}}/wait?timeout=60"

    def wait(i: int) -> tuple[float, dict]:  # type: ignore[type-arg]
        with urllib.request.urlopen(url.format(f"s{i}"), timeout=60) as answer:
            return time.monotonic(), json.loads(answer.read())

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        waits = [pool.submit(wait, i) for i in range(20)]
        poll_until(lambda: system.server.waiters.held() == 20)  # more than 16 handler threads
        assert not any(w.done() for w in waits)
        for i in range(20):
            client = Client(system.server.port)
            client.request("DELETE", f"/api/v1/dags/slow/runs/s{i}")
            ended = time.monotonic()
            answered, body = waits[i].result(timeout=10)
            assert body["data"]["state"] == "cancelled"
            assert answered - ended < 0.1


@ONE_PROCESS
def test_wait_errors(system: System) -> None:
    trigger(system, "etl", {"run_id": "e"})
    for query, message in (
        ("timeout=0", "'timeout' must be a number above 0 and at most 3600, got 0.0"),
        ("timeout=3601", "at most 3600"),
        ("timeout=nan", "'timeout' must be"),
        ("timeout=soon", "'timeout' must be"),
        ("colour=red", "unknown query parameter"),
    ):
        status, _, body = system.client.request("GET", f"/api/v1/dags/etl/runs/e/wait?{query}")
        assert status == 400 and message in body["error"]["message"], body
    assert system.client.request("GET", "/api/v1/dags/etl/runs/ghost/wait")[0] == 404
    assert system.client.request("GET", "/api/v1/dags/ghost/runs/e/wait")[0] == 404


def test_mark_a_running_run_failed_kills_its_try(system: System) -> None:
    trigger(system, "slow", {"run_id": "m"})
    system.wait_task_running("slow", "m", "sleepy")
    status, _, body = system.client.request(
        "PATCH", "/api/v1/dags/slow/runs/m", {"state": "failed", "note": "stopped by hand"}
    )
    assert status == 200, body
    assert body["data"]["state"] == "failed" and body["data"]["note"] == "stopped by hand"
    states = {t["task_id"]: t["state"] for t in body["data"]["task_instances"]}
    assert states == {"sleepy": "failed", "later": "failed"}
    again = system.client.request("PATCH", "/api/v1/dags/slow/runs/m", {"state": "failed"})
    assert again[0] == 409 and "already" in again[2]["error"]["message"]
    # marked success: every task that did not succeed succeeds
    done = system.client.request("PATCH", "/api/v1/dags/slow/runs/m", {"state": "success"})[2]
    assert {t["state"] for t in done["data"]["task_instances"]} == {"success"}


@ONE_PROCESS
def test_patch_run_errors(system: System) -> None:
    trigger(system, "etl", {"run_id": "p"})
    for body, message in (
        ({}, "the body needs at least one of 'state' and 'note'"),
        ({"state": "cancelled"}, "'state' must be one of failed, success"),
        ({"note": 3}, "'note' must be a string"),
        ({"note": "x" * 1001}, "at most 1000"),
        ({"colour": "red"}, "unknown field(s) colour"),
    ):
        status, _, answer = system.client.request("PATCH", "/api/v1/dags/etl/runs/p", body)
        assert status == 400 and message in answer["error"]["message"], answer
    assert system.client.request("PATCH", "/api/v1/dags/etl/runs/ghost", {"note": "n"})[0] == 404
    note = system.client.request("PATCH", "/api/v1/dags/etl/runs/p", {"note": "only a note"})
    assert note[0] == 200 and note[2]["data"]["note"] == "only a note"


def test_mark_a_task_and_its_downstream_follows(system: System) -> None:
    trigger(system, "slow", {"run_id": "t"})
    system.wait_task_running("slow", "t", "sleepy")
    status, _, body = system.client.request(
        "PATCH", "/api/v1/dags/slow/runs/t/tasks/sleepy", {"state": "success"}
    )
    assert status == 200 and body["data"]["state"] == "success", body
    run = system.wait_state("slow", "t", {"success"})
    assert [t["state"] for t in run["task_instances"]] == ["success", "success"]
    # a finished run follows its tasks: marking its leaf failed fails it
    system.client.request("PATCH", "/api/v1/dags/slow/runs/t/tasks/later", {"state": "failed"})
    assert system.store.runs.get_run("slow", "t").state.value == "failed"
    for body, status in (({"state": "queued"}, 400), ({}, 400), ({"state": "failed"}, 409)):
        answer = system.client.request("PATCH", "/api/v1/dags/slow/runs/t/tasks/later", body)
        assert answer[0] == status, answer
    assert (
        system.client.request(
            "PATCH", "/api/v1/dags/slow/runs/t/tasks/ghost", {"state": "success"}
        )[0]
        == 404
    )


def test_clear_with_a_dry_run_first(system: System) -> None:
    trigger(system, "etl", {"run_id": "c"})
    system.wait_state("etl", "c", {"success"})
    path = "/api/v1/dags/etl/runs/c/clear"
    dry = system.client.request("POST", path, {"task_ids": ["extract"], "dry_run": True})[2]
    assert dry["data"]["dry_run"] is True and dry["data"]["task_ids"] == ["extract"]
    assert system.store.runs.get_run("etl", "c").state.value == "success"  # nothing changed
    down = system.client.request(
        "POST", path, {"task_ids": ["extract"], "include_downstream": True, "dry_run": True}
    )[2]
    assert down["data"]["task_ids"] == ["extract", "load"]
    failed_only = system.client.request("POST", path, {"only_failed": True, "dry_run": True})
    assert failed_only[2]["data"]["task_ids"] == []
    assert system.client.request("POST", path, {"only_failed": True})[0] == 409
    status, _, cleared = system.client.request("POST", path, {"task_ids": ["load"]})
    assert status == 200 and cleared["data"]["task_ids"] == ["load"], cleared
    assert cleared["data"]["dry_run"] is False
    run = system.wait_state("etl", "c", {"success"})
    load = next(t for t in run["task_instances"] if t["task_id"] == "load")
    assert load["try_number"] == 2
    for body, message in (
        ({"task_ids": ["ghost"]}, "no task(s) ghost"),
        ({"task_ids": "load"}, "'task_ids' must be a list"),
        ({"dry_run": "yes"}, "'dry_run' must be true or false"),
    ):
        answer = system.client.request("POST", path, body)
        assert answer[0] in (400, 404) and message in answer[2]["error"]["message"], answer


def test_follow_a_running_log_until_the_try_ends(system: System) -> None:
    trigger(system, "ticker", {"run_id": "f"})
    url = (
        f"http://127.0.0.1:{system.server.port}"
        "/api/v1/dags/ticker/runs/f/tasks/tick/logs?follow=true"
    )
    arrivals: list[tuple[float, str]] = []
    with requests.get(url, stream=True, timeout=30) as answer:
        assert answer.status_code == 200
        assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert answer.headers["Transfer-Encoding"] == "chunked"
        for line in answer.iter_lines(decode_unicode=True):
            if "] tick " in line:  # each line is stamped with when it was written
                arrivals.append((time.monotonic(), line.split("] ", 1)[1]))
    ended = time.monotonic()
    assert [text for _, text in arrivals] == [f"tick {i}" for i in range(1, 6)]
    assert arrivals[-1][0] - arrivals[0][0] > 1.0  # streamed as written, not at the end
    assert ended - arrivals[-1][0] < 2  # the body ends with the try
    # a finished try: the whole log, then the end; an offset skips the start
    with requests.get(url, stream=True, timeout=10) as answer:
        assert "tick 5" in answer.text
    with requests.get(url + "&offset=30", timeout=10) as answer:
        assert answer.text.startswith("tick 1\n[")  # the stamp of tick 1 is 30 bytes
    with requests.get(url + "&limit=37", timeout=10) as answer:
        assert answer.text.endswith("] tick 1\n") and len(answer.content) == 37


@ONE_PROCESS
def test_follow_errors(system: System) -> None:
    trigger(system, "ticker", {"run_id": "e"})
    base = "/api/v1/dags/ticker/runs/e/tasks/tick/logs"
    for query, status in (
        ("follow=maybe", 400),
        ("follow=true&limit=0", 400),
        ("follow=true&try_number=9", 404),
    ):
        assert system.client.request("GET", f"{base}?{query}")[0] == status, query
    assert (
        system.client.request("GET", "/api/v1/dags/ticker/runs/e/tasks/ghost/logs?follow=true")[0]
        == 404
    )


def test_a_held_wait_is_answered_503_when_the_server_stops(system: System) -> None:
    trigger(system, "slow", {"run_id": "held"})
    url = f"http://127.0.0.1:{system.server.port}/api/v1/dags/slow/runs/held/wait?timeout=60"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(requests.get, url, timeout=30)
        poll_until(lambda: system.server.waiters.held() == 1)
        started = time.monotonic()
        system.server.stop()
        status = answer.result(timeout=10)
    assert status.status_code == 503 and status.headers["Retry-After"] == "1"
    assert "wait again" in status.json()["error"]["message"]
    assert time.monotonic() - started < 5
