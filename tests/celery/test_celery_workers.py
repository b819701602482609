"""Tries on Celery workers, end to end: a scheduler with ``--executor celery`` and real
``pipeline-core worker`` processes on PostgreSQL, over Redis and RabbitMQ."""

from __future__ import annotations

import pytest

from pipeline_core.engine.remote import RemoteControl
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES, RunState, TaskState
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery, TaskInstanceQuery
from tests.celery.cluster import scheduler, worker
from tests.conftest import poll_until, process_alive
from tests.notify.receivers import Receiver

pytestmark = pytest.mark.slow


def finished(store, dag_id: str, run_id: str):  # type: ignore[no-untyped-def]
    def check() -> bool:
        return store.runs.get_run(dag_id, run_id).state in FINISHED_RUN_STATES

    return check


def workers_of(store, run_id: str) -> set[str]:  # type: ignore[no-untyped-def]
    events = store.events.read_events(
        EventQuery(types=("task.claimed",), run_id=run_id, limit=10_000)
    )
    return {e.payload["worker"] for e in events}


def test_a_200_task_dag_runs_across_two_workers(tmp_path, pg_url, broker_url):
    folder = tmp_path / "dags"
    folder.mkdir()
    tasks = "".join(
        f"  t{i}: {{type: python, callable: 'tests.fixtures:add', kwargs: {{a: {i}, b: 1}}}}\n"
        for i in range(199)
    )
    deps = ", ".join(f"t{i}" for i in range(199))
    (folder / "wide.yaml").write_text(
        "dag_id: wide\nconcurrency: 64\ndefault_args: {executor: celery}\ntasks:\n"
        f"{tasks}  total: {{type: shell, command: 'echo done', depends_on: [{deps}]}}\n"
    )
    store = open_store(pg_url)
    processes = [worker(tmp_path, f"w{i}", folder, pg_url, broker_url) for i in range(2)]
    engine = scheduler(tmp_path, "scheduler", folder, pg_url, broker_url)
    try:
        poll_until(lambda: engine.says("scheduler running"), timeout=60)
        poll_until(lambda: len(store.heartbeats.list_heartbeats("worker")) == 2, timeout=60)
        run = RemoteControl(store).trigger(TriggerRequest("wide", run_id="r1"))
        poll_until(finished(store, "wide", "r1"), timeout=120)
        assert store.runs.get_run("wide", run.run_id).state is RunState.SUCCESS
        tis = store.tasks.query_task_instances(
            TaskInstanceQuery(dag_id="wide", run_id="r1", limit=500)
        )
        assert len(tis.items) == 200
        assert {ti.state for ti in tis.items} == {TaskState.SUCCESS}
        assert {ti.try_number for ti in tis.items} == {1}
        assert store.task_data.get_xcom(tis.items[0].key, "return_value").value is not None
        assert len(workers_of(store, "r1")) == 2  # both workers took tries
        log = store.task_data.read_log(next(ti.key for ti in tis.items if ti.task_id == "total"), 1)
        assert "done" in log.text  # the worker's log reached the shared store
    finally:
        engine.stop()
        for process in processes:
            process.stop()
        store.close()


def test_a_worker_killed_mid_task_has_its_try_run_again(tmp_path, pg_url, broker_url):
    folder, pids = tmp_path / "dags", tmp_path / "pids"
    folder.mkdir()
    pids.mkdir()
    # The first try waits to be killed; the next one finishes.
    command = f"echo $$ > {pids}/try$(( {{{{ try_number }}}} )); [ {{{{ try_number }}}} -gt 1 ] || sleep 300"
    receiver = Receiver().start()
    (folder / "slow.yaml").write_text(
        "dag_id: slow\ndefault_args: {executor: celery}\n"
        f"notify: [{{on: [task_retrying, task_failed, run_succeeded], webhook: '{receiver.url}'}}]\n"
        f"tasks:\n  long: {{type: shell, command: {command!r}, retries: 1, retry_delay: 0}}\n"
    )
    store = open_store(pg_url)
    first = worker(tmp_path, "w1", folder, pg_url, broker_url)
    second = None
    engine = scheduler(tmp_path, "scheduler", folder, pg_url, broker_url)
    try:
        poll_until(lambda: engine.says("scheduler running"), timeout=60)
        poll_until(lambda: len(store.heartbeats.list_heartbeats("worker")) == 1, timeout=60)
        RemoteControl(store).trigger(TriggerRequest("slow", run_id="r1"))
        poll_until((pids / "try1").exists, timeout=60)
        second = worker(tmp_path, "w2", folder, pg_url, broker_url)
        poll_until(lambda: len(store.heartbeats.list_heartbeats("worker")) == 2, timeout=60)
        first.kill()
        poll_until(finished(store, "slow", "r1"), timeout=90)
        assert store.runs.get_run("slow", "r1").state is RunState.SUCCESS
        ti = store.tasks.get_task_instance(_key("slow", "r1", "long"))
        assert ti.try_number == 2  # the lost try counted as a try
        reported = store.events.read_events(EventQuery(types=("task.reported",), run_id="r1"))
        assert "lost" in (reported[0].payload["error"] or "")
        # The lost try notified once, as a retry, with its reason; then the run's success.
        received = receiver.wait_for(2, timeout=30)
        assert [r.json["event"] for r in received] == ["task_retrying", "run_succeeded"]
        assert "lost" in received[0].json["error"] and received[0].json["try_number"] == 1
        poll_until(lambda: store.notifications.notification_counts()["delivered"] == 2)
        assert store.notifications.notification_counts()["pending"] == 0
        assert len(receiver.received) == 2
        assert store.tries.list_claims() == [] or all(
            c.reported_at for c in store.tries.list_claims()
        )
    finally:
        engine.stop()
        first.stop()
        if second is not None:
            second.stop()
        store.close()
        receiver.stop()


def test_cancel_kills_a_task_running_on_a_worker(tmp_path, pg_url, redis_url):
    folder, pids = tmp_path / "dags", tmp_path / "pids"
    folder.mkdir()
    pids.mkdir()
    (folder / "hang.yaml").write_text(
        "dag_id: hang\ndefault_args: {executor: celery}\ntasks:\n"
        f"  spin: {{type: python, callable: 'tests.fixtures:spin', kwargs: {{pid_file: '{pids}/spin'}}}}\n"
    )
    store = open_store(pg_url)
    remote = worker(tmp_path, "w1", folder, pg_url, redis_url)
    engine = scheduler(tmp_path, "scheduler", folder, pg_url, redis_url)
    try:
        poll_until(lambda: engine.says("scheduler running"), timeout=60)
        control = RemoteControl(store)
        control.trigger(TriggerRequest("hang", run_id="r1"))
        poll_until(lambda: (pids / "spin").exists() and (pids / "spin").read_text(), timeout=60)
        pid = int((pids / "spin").read_text())
        health = _health(store)
        (seen,) = health["workers"]
        assert seen["role"] == "active" and seen["pid"] == remote.process.pid
        assert seen["running"] == [
            {"dag_id": "hang", "run_id": "r1", "task_id": "spin", "try_number": 1}
        ]
        assert all(i["kind"] != "worker" for i in health["instances"])
        assert control.cancel("hang", "r1").state is RunState.CANCELLED
        poll_until(lambda: not process_alive(pid), timeout=30)
        poll_until(
            lambda: any(
                e.payload["outcome"] == "cancelled"
                for e in store.events.read_events(EventQuery(types=("task.reported",)))
            ),
            timeout=30,
        )
        assert (
            store.tasks.get_task_instance(_key("hang", "r1", "spin")).state is TaskState.CANCELLED
        )
        assert remote.process.poll() is None  # the worker lives on
    finally:
        engine.stop()
        remote.stop()
        store.close()


def _health(store) -> dict:  # type: ignore[no-untyped-def]
    """``/api/v1/health`` of an API server on ``store``, through ``requests``, checked
    against the OpenAPI document."""
    import requests

    from tests.api.conftest import serve, validate

    server = serve(store)
    try:
        answer = requests.get(f"http://127.0.0.1:{server.port}/api/v1/health", timeout=10)
        validate("GET", "/api/v1/health", answer.status_code, answer.json())
        data: dict = answer.json()["data"]
        return data
    finally:
        server.stop()


def _key(dag_id: str, run_id: str, task_id: str):  # type: ignore[no-untyped-def]
    from pipeline_core.model import TaskKey

    return TaskKey(dag_id, run_id, task_id)


def test_per_pool_queues_send_each_try_to_the_workers_of_its_pool(tmp_path, pg_url, redis_url):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "mixed.yaml").write_text(
        "dag_id: mixed\ndefault_args: {executor: celery}\ntasks:\n"
        "  light: {type: shell, command: 'echo light'}\n"
        "  heavy: {type: shell, command: 'echo heavy', pool: heavy}\n"
    )
    store = open_store(pg_url)
    per_pool = ("--queue-per-pool",)
    heavy = worker(tmp_path, "heavy", folder, pg_url, redis_url, "--queues", "pipeline-core.heavy")
    light = worker(
        tmp_path, "light", folder, pg_url, redis_url, "--queues", "pipeline-core.default_pool"
    )
    engine = scheduler(tmp_path, "scheduler", folder, pg_url, redis_url, *per_pool)
    try:
        poll_until(lambda: engine.says("scheduler running"), timeout=60)
        poll_until(lambda: len(store.heartbeats.list_heartbeats("worker")) == 2, timeout=60)
        RemoteControl(store).trigger(TriggerRequest("mixed", run_id="r1"))
        poll_until(finished(store, "mixed", "r1"), timeout=60)
        assert store.runs.get_run("mixed", "r1").state is RunState.SUCCESS
        claimed = store.events.read_events(EventQuery(types=("task.claimed",), run_id="r1"))
        by_task = {e.task_id: e.payload["worker"] for e in claimed}
        pids = {b.component_id: b.pid for b in store.heartbeats.list_heartbeats("worker")}
        assert pids[by_task["heavy"]] == heavy.process.pid
        assert pids[by_task["light"]] == light.process.pid
    finally:
        engine.stop()
        heavy.stop()
        light.stop()
        store.close()
