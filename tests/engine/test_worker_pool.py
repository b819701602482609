"""Task code in worker processes: a crash fails only its try, kill means kill, limits hold,
and a pool that cannot start says so. Real processes throughout."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

import pytest

from pipeline_core.engine import Engine, EngineSettings
from pipeline_core.errors import ConfigurationError
from pipeline_core.metrics import MetricsCollector
from pipeline_core.model import TriggerRequest
from pipeline_core.state import RunState
from tests.conftest import process_alive
from tests.engine.conftest import dag_from

T = "tests.fixtures"


def read_pid(path) -> int:  # type: ignore[no-untyped-def]
    return int(path.read_text())


@pytest.mark.parametrize(
    ("call", "error"),
    [
        pytest.param(
            f'"{T}:exit_hard", kwargs: {{code: 3}}', "worker exited with code 3", id="exit"
        ),
        pytest.param(
            f'"{T}:kill_self", kwargs: {{signal_number: 11}}',
            "worker killed by signal 11 (SIGSEGV)",
            id="segfault",
        ),
        pytest.param(
            f'"{T}:kill_self", kwargs: {{signal_number: 9}}',
            "worker killed by signal 9 (out of memory?)",
            id="oom-killed",
        ),
    ],
)
def test_a_crashing_task_fails_only_its_own_try(harness, call, error):
    dag = dag_from(
        f"""
        tasks:
          crash: {{type: python, callable: {call}}}
          sibling: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 2}}}}
          after: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 2}}, depends_on: [sibling]}}
        """
    )
    metrics = MetricsCollector()
    harness.engine = Engine(
        harness.store, {"t": dag}, metrics=metrics, settings=EngineSettings(kill_grace=1.0)
    ).start()
    run = harness.wait_run(harness.engine.trigger(TriggerRequest("t")))
    assert harness.states(run) == {"crash": "failed", "sibling": "success", "after": "success"}
    assert harness.ti(run, "crash").error == error
    # The engine carries on: the next run gets a fresh worker.
    again = harness.wait_run(harness.engine.trigger(TriggerRequest("t", run_id="again")))
    assert harness.states(again)["after"] == "success"
    counters = {
        (c["name"], c["labels"].get("reason")): c["value"] for c in metrics.snapshot()["counters"]
    }
    assert counters[("task.killed", "crash")] == 2
    assert counters[("worker.restarts", None)] >= 2


def test_a_crash_is_retried_by_the_tasks_retries(harness, tmp_path):
    dag = dag_from(
        f"""
        tasks:
          phoenix:
            type: python
            callable: "{T}:crash_then_succeed"
            kwargs: {{path: "{tmp_path / "calls"}"}}
            retries: 1
        """
    )
    engine = harness.start(dag, default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    assert harness.ti(run, "phoenix").try_number == 2


@pytest.mark.parametrize("mode", ["worker", "process"])
def test_a_spinning_task_is_killed_at_its_timeout(harness, tmp_path, mode):
    pid_file = tmp_path / "pid"
    dag = dag_from(
        f"""
        tasks:
          hang:
            type: python
            callable: "{T}:spin"
            kwargs: {{pid_file: "{pid_file}"}}
            timeout: 1s
            executor: {mode}
          fine: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 1}}, depends_on: [hang],
                  trigger_rule: all_done}}
        """
    )
    engine = harness.start(dag, default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.states(run) == {"hang": "failed", "fine": "success"}
    assert harness.ti(run, "hang").error == "timed out after 1s"
    harness.poll(lambda: not process_alive(read_pid(pid_file)), timeout=2)


def test_cancel_kills_a_spinning_callable_and_its_children(harness, tmp_path):
    pid_file = tmp_path / "child"
    dag = dag_from(
        f"""
        tasks:
          hang: {{type: python, callable: "{T}:spin_with_child", kwargs: {{pid_file: "{pid_file}"}}}}
        """
    )
    engine = harness.start(dag, default_executor="worker")
    run = engine.trigger(TriggerRequest("t"))
    harness.poll(lambda: pid_file.exists() and pid_file.read_text() != "")
    child = read_pid(pid_file)
    assert process_alive(child)
    engine.cancel("t", run.run_id)
    assert harness.wait_run(run).state is RunState.CANCELLED
    harness.poll(lambda: not process_alive(child), timeout=2)
    # The pool replaced the killed worker: the next try runs.
    nxt = dag_from(f'tasks:\n  ok: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 1}}}}\n')
    engine.set_dags({"t": nxt})
    assert (
        harness.wait_run(engine.trigger(TriggerRequest("t", run_id="next"))).state
        is RunState.SUCCESS
    )


def test_a_shell_task_timeout_kills_its_whole_tree(harness, tmp_path):
    pid_file = tmp_path / "pid"
    dag = dag_from(
        f"""
        tasks:
          sh: {{type: shell, command: "sleep 300 & echo $! > {pid_file}; wait", timeout: 1s}}
        """
    )
    engine = harness.start(dag, default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.ti(run, "sh").error == "timed out after 1s"
    harness.poll(lambda: not process_alive(read_pid(pid_file)), timeout=2)


def test_memory_limit_fails_the_try_naming_the_limit(harness):
    dag = dag_from(
        f"""
        tasks:
          hog: {{type: python, callable: "{T}:hog_memory", kwargs: {{megabytes: 4096}},
                 memory_limit: 512MiB}}
          small: {{type: python, callable: "{T}:hog_memory", kwargs: {{megabytes: 64}},
                   depends_on: [hog], trigger_rule: all_done}}
        """
    )
    engine = harness.start(dag, default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.states(run) == {"hog": "failed", "small": "success"}
    assert harness.ti(run, "hog").error.startswith("memory_limit 512MiB exceeded")


def test_cpu_time_limit_fails_the_try_naming_the_limit(harness, tmp_path):
    dag = dag_from(
        f"""
        tasks:
          burn: {{type: python, callable: "{T}:spin", cpu_time_limit: 1s}}
        """
    )
    engine = harness.start(dag, default_executor="worker")
    run = harness.wait_run(engine.trigger(TriggerRequest("t")), timeout=20)
    assert run.state is RunState.FAILED
    assert harness.ti(run, "burn").error.startswith("cpu_time_limit 1s exceeded")


def test_the_pool_grows_when_every_worker_is_busy(harness, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    tasks = "\n".join(
        f'  w{i}: {{type: python, callable: "{T}:wait_for_files", '
        f'kwargs: {{folder: "{barrier}", name: "w{i}", count: 5}}}}'
        for i in range(5)
    )
    engine = harness.start(dag_from(f"tasks:\n{tasks}\n"), default_executor="worker", workers=2)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")), timeout=30)
    assert run.state is RunState.SUCCESS, harness.states(run)
    pids = {
        harness.store.task_data.get_xcom(ti.key, "return_value").value for ti in _tis(harness, run)
    }
    assert len(pids) == 5


def test_max_tasks_per_worker_recycles_workers(harness):
    tasks = "\n".join(
        f'  p{i}: {{type: python, callable: "os:getpid", depends_on: [p{i - 1}]}}'
        if i
        else '  p0: {type: python, callable: "os:getpid"}'
        for i in range(4)
    )
    engine = harness.start(
        dag_from(f"tasks:\n{tasks}\n"), default_executor="worker", max_tasks_per_worker=1
    )
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    pids = [
        harness.store.task_data.get_xcom(ti.key, "return_value").value for ti in _tis(harness, run)
    ]
    assert len(set(pids)) == 4


def _tis(harness, run):  # type: ignore[no-untyped-def]
    from pipeline_core.store.types import TaskInstanceQuery

    return harness.store.tasks.query_task_instances(
        TaskInstanceQuery(dag_id="t", run_id=run.run_id)
    ).items


# --- a pool that cannot start -----------------------------------------------------------------


def write_module(folder, name: str, body: str) -> None:  # type: ignore[no-untyped-def]
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_a_preload_module_that_fails_stops_the_engine_at_start(harness, tmp_path, monkeypatch):
    write_module(tmp_path, "broken_preload", "raise RuntimeError('no database driver')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigurationError, match="no database driver") as caught:
        Engine(
            harness.store, {}, settings=EngineSettings(worker_preload=("broken_preload",))
        ).start()
    assert "broken_preload" in caught.value.message


def test_workers_that_die_while_starting_stop_the_engine_at_start(harness, tmp_path, monkeypatch):
    write_module(
        tmp_path,
        "dies_in_child",
        """
        import os
        os.register_at_fork(after_in_child=lambda: os._exit(7))
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match="worker exited with code 7 while starting"):
        Engine(
            harness.store, {}, settings=EngineSettings(worker_preload=("dies_in_child",))
        ).start()
    assert time.monotonic() - started < 15


def test_an_interpreter_that_cannot_run_is_a_start_up_error(harness):
    from pipeline_core.engine.executors.workers.pool import PoolSettings, WorkerPool

    for python, reason in [("/nonexistent/python3", "cannot run"), ("/bin/false", "exited")]:
        with pytest.raises(ConfigurationError, match=reason):
            WorkerPool(harness.store, PoolSettings(python=python)).start()


def test_the_engine_stops_its_workers_when_it_stops(harness):
    dag = dag_from(f'tasks:\n  a: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 1}}}}\n')
    engine = harness.start(dag, default_executor="worker")
    harness.wait_run(engine.trigger(TriggerRequest("t")))
    pool = engine.executor.workers  # type: ignore[attr-defined]
    pids = list(pool.roster.workers)
    assert pids and all(process_alive(p) for p in pids)
    engine.stop(grace=0)
    harness.engine = None
    harness.poll(lambda: not any(process_alive(p) for p in pids), timeout=5)
    assert sys.platform != "linux" or not pool._thread.is_alive()


def test_a_killed_zygote_is_replaced(harness):
    dag = dag_from(f'tasks:\n  a: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 1}}}}\n')
    engine = harness.start(dag, default_executor="worker")
    pool = engine.executor.workers  # type: ignore[attr-defined]
    old = pool.roster.zygote.process.pid
    os.kill(old, signal.SIGKILL)
    harness.poll(lambda: (z := pool.roster.zygote) is not None and z.process.pid != old, timeout=10)
    assert harness.wait_run(engine.trigger(TriggerRequest("t"))).state is RunState.SUCCESS
