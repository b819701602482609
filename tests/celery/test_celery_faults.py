"""What goes wrong around Celery: a broker that is not there at start or goes away during a
run, a worker with other DAG files, a Celery DAG on an engine without a broker, malformed
messages, and the active scheduler killed while its tries run on workers."""

from __future__ import annotations

import subprocess

import pytest

from pipeline_core.dag.bag import load_folder
from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.engine.executors.celery.app import CelerySettings
from pipeline_core.engine.remote import RemoteControl
from pipeline_core.model import TriggerRequest
from pipeline_core.state import FINISHED_RUN_STATES, RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import EventQuery
from tests.celery.cluster import scheduler, worker
from tests.celery.proxy import Proxy
from tests.conftest import pipeline_core_process, poll_until

pytestmark = pytest.mark.slow
UNREACHABLE = "redis://:s3cret@127.0.0.1:9/0"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    process = pipeline_core_process(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


@pytest.mark.parametrize("command", ["scheduler", "worker"])
def test_an_unreachable_broker_at_start_is_refused_naming_it(tmp_path, command):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "a.yaml").write_text("dag_id: a\ntasks:\n  t: {type: noop}\n")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    extra = ("--executor", "celery") if command == "scheduler" else ()
    done = _run(command, "--dags-folder", str(folder), "--db", db, "--broker", UNREACHABLE, *extra)
    assert done.returncode == 1
    assert "cannot reach the Celery broker redis://:***@127.0.0.1:9/0" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_executor_celery_without_a_broker_is_a_usage_error(tmp_path):
    done = _run(
        "scheduler", "--dags-folder", str(tmp_path), "--db", "memory://", "--executor", "celery"
    )
    assert done.returncode == 1
    assert "--executor celery needs --broker URL" in done.stderr


def test_a_celery_dag_on_an_engine_without_a_broker_does_not_load(tmp_path):
    from pipeline_core.dag.model import LOCAL_EXECUTORS
    from pipeline_core.scheduler.sync import DagSync

    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "remote.yaml").write_text(
        "dag_id: remote\ntasks:\n  t: {type: shell, command: 'true', executor: celery}\n"
    )
    (folder / "local.yaml").write_text("dag_id: local\ntasks:\n  t: {type: noop}\n")
    store = open_store("memory://")
    try:
        dags = DagSync(store, folder, executors=LOCAL_EXECUTORS).refresh()
        assert set(dags) == {"local"}
        (error,) = store.dags.list_import_errors()
        assert error.filename.endswith("remote.yaml")
        assert error.issues[0]["path"] == "tasks.t.executor"
        assert (
            "uses executor 'celery', which this engine does not have" in error.issues[0]["message"]
        )
        assert "--broker URL" in error.issues[0]["message"]
    finally:
        store.close()


def test_tries_wait_while_the_broker_is_away_and_go_out_when_it_is_back(
    tmp_path, pg_url, redis_url
):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "two.yaml").write_text(
        "dag_id: two\ndefault_args: {executor: celery}\ntasks:\n"
        "  a: {type: shell, command: 'echo a'}\n  b: {type: shell, command: 'echo b', depends_on: [a]}\n"
    )
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = Proxy(port).open()
    via_proxy = redis_url.replace(f":{port}/", f":{proxy.port}/")
    store = open_store(pg_url)
    remote = worker(tmp_path, "w1", folder, pg_url, redis_url)  # the worker's broker stays up
    settings = EngineSettings(
        default_executor="celery", celery=CelerySettings(via_proxy, connect_timeout=2)
    )
    engine = Engine(store, load_folder(folder).dags, settings=settings).start()
    try:
        poll_until(lambda: len(store.heartbeats.list_heartbeats("worker")) == 1, timeout=60)
        proxy.cut()
        run = engine.trigger(TriggerRequest("two", run_id="r1"))
        sender = engine.executor.remote  # type: ignore[attr-defined]
        poll_until(lambda: sender.waiting == 1, timeout=10)
        assert store.tries.list_claims() == []  # nothing reached a worker
        proxy.open()
        poll_until(
            lambda: store.runs.get_run("two", run.run_id).state in FINISHED_RUN_STATES, timeout=60
        )
        assert store.runs.get_run("two", "r1").state is RunState.SUCCESS
    finally:
        engine.stop(grace=1)
        proxy.cut()
        remote.stop()
        store.close()


def test_a_worker_with_another_version_of_the_dag_runs_the_runs_version_from_the_store(
    tmp_path, pg_url, redis_url
):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for folder, command in ((ours, "echo new"), (theirs, "echo old")):
        folder.mkdir()
        (folder / "v.yaml").write_text(
            f"dag_id: v\ndefault_args: {{executor: celery}}\ntasks:\n  t: {{type: shell, command: '{command}'}}\n"
        )
    store = open_store(pg_url)
    remote = worker(tmp_path, "w1", theirs, pg_url, redis_url)
    engine = scheduler(tmp_path, "scheduler", ours, pg_url, redis_url)
    try:
        poll_until(lambda: engine.says("scheduler running"), timeout=60)
        RemoteControl(store).trigger(TriggerRequest("v", run_id="r1"))
        poll_until(lambda: store.runs.get_run("v", "r1").state in FINISHED_RUN_STATES, timeout=60)
        ti = store.tasks.get_task_instance(_key("v", "r1", "t"))
        assert ti.state.value == "success", ti.error
        said = store.task_data.get_xcom(ti.key, "return_value")
        assert said is not None and said.value == "new"  # the engine's version, not its files'
        from pipeline_core.engine.executors.celery.runtime import TryWorker, WorkerSettings
        from pipeline_core.engine.executors.local import LocalExecutor

        runtime = TryWorker(store, LocalExecutor(store), WorkerSettings(str(theirs)))
        refused = runtime._dag("v", "0" * 64)  # a version the store never had
        assert isinstance(refused, str) and "version 000000000000 of DAG 'v'" in refused
    finally:
        engine.stop()
        remote.stop()
        store.close()


def test_a_malformed_message_is_dropped_with_a_reason(tmp_path, pg_url):
    from pipeline_core.engine.executors.celery.runtime import TryWorker, WorkerSettings
    from pipeline_core.engine.executors.local import LocalExecutor

    store = open_store(pg_url)
    runtime = TryWorker(
        store, LocalExecutor(store, default_mode="thread"), WorkerSettings(str(tmp_path))
    )
    try:
        message = {"dag_id": "x", "run_id": "r", "task_id": "t", "submission": "s"}
        assert runtime.run({"dag_id": "x"}) == "malformed"
        assert runtime.run({**message, "dag_version": "v", "try_number": 0}) == "malformed"
        running = runtime.run({**message, "dag_version": "v", "try_number": 1})
        assert running == "not running any more"
        assert store.events.read_events(EventQuery()) == []
    finally:
        store.close()


def test_a_standby_takes_over_tries_running_on_workers_without_running_them_twice(
    tmp_path, pg_url, redis_url
):
    folder, markers = tmp_path / "dags", tmp_path / "markers"
    folder.mkdir()
    markers.mkdir()
    command = f"sleep 2; echo {{{{ try_number }}}} >> {markers}/{{{{ task_id }}}}"
    tasks = "".join(
        f"  t{i}: {{type: shell, command: {command!r}, retries: 2}}\n" for i in range(4)
    )
    (folder / "work.yaml").write_text(
        f"dag_id: work\ndefault_args: {{executor: celery}}\ntasks:\n{tasks}"
    )
    store = open_store(pg_url)
    remote = worker(tmp_path, "w1", folder, pg_url, redis_url, "--concurrency", "4")
    first = scheduler(tmp_path, "first", folder, pg_url, redis_url)
    second = None
    try:
        poll_until(lambda: first.says("scheduler running"), timeout=60)
        second = scheduler(tmp_path, "second", folder, pg_url, redis_url)
        standby = second
        poll_until(lambda: standby.says("standby:"), timeout=60)
        RemoteControl(store).trigger(TriggerRequest("work", run_id="r1"))
        poll_until(lambda: len(store.tries.list_claims()) == 4, timeout=60)
        first.kill()
        poll_until(lambda: standby.says("taking over"), timeout=30)
        poll_until(
            lambda: store.runs.get_run("work", "r1").state in FINISHED_RUN_STATES, timeout=60
        )
        assert store.runs.get_run("work", "r1").state is RunState.SUCCESS
        done = {p.name: p.read_text().split() for p in markers.iterdir()}
        assert done == {f"t{i}": ["1"] for i in range(4)}  # each ran once, its first try
        changes = store.events.read_events(EventQuery(types=("task.state_changed",), limit=1000))
        assert not any(e.payload.get("reason") == "orphaned" for e in changes)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        remote.stop()
        store.close()


def _key(dag_id: str, run_id: str, task_id: str):  # type: ignore[no-untyped-def]
    from pipeline_core.model import TaskKey

    return TaskKey(dag_id, run_id, task_id)
