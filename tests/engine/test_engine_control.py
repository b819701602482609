"""The engine end to end on a real SQLite store: cancel, retry, concurrency and pools, sensors,
max_active_runs, pause, and DAGs that change under running runs."""

from __future__ import annotations

import pytest

from pipeline_core.errors import Conflict, NotFound
from pipeline_core.model import TaskKey, TriggerRequest
from pipeline_core.state import RunState
from pipeline_core.store.types import Pool
from tests import fixtures
from tests.conftest import process_alive
from tests.engine.conftest import dag_from

T = "tests.fixtures"


def test_cancel_kills_the_running_shell_task(harness, tmp_path):
    pid_file = tmp_path / "child.pid"
    dag = dag_from(
        f"""
        tasks:
          long: {{type: shell, command: "sleep 60 & echo $! > {pid_file}; wait"}}
          after: {{depends_on: [long]}}
          other: {{type: python, callable: "{T}:wait_gate", kwargs: {{name: never}}, pool: tiny}}
        """
    )
    harness.store.pools.create_pool(Pool("tiny", 0))
    engine = harness.start(dag)
    run = engine.trigger(TriggerRequest("t"))
    harness.poll(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    cancelled = engine.cancel("t", run.run_id)
    assert cancelled.state is RunState.CANCELLED
    assert harness.states(run) == {"long": "cancelled", "after": "cancelled", "other": "cancelled"}
    harness.poll(lambda: not process_alive(child), timeout=5)
    with pytest.raises(Conflict, match="already finished"):
        engine.cancel("t", run.run_id)


def test_retry_requeues_failed_tasks_and_the_run_succeeds(harness):
    dag = dag_from(
        f"""
        tasks:
          a: {{type: noop}}
          flaky: {{type: python, callable: "{T}:fail_times", kwargs: {{name: f, times: 1}}, depends_on: [a]}}
          after: {{depends_on: [flaky]}}
        """
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    with pytest.raises(Conflict, match="no finished task"):
        engine.retry("t", run.run_id, task_ids=[])
    retried, requeued = engine.retry("t", run.run_id)
    assert sorted(requeued) == ["after", "flaky"]
    run = harness.wait_run(retried)
    assert run.state is RunState.SUCCESS
    assert harness.states(run) == {"a": "success", "flaky": "success", "after": "success"}
    assert harness.ti(run, "flaky").try_number == 2
    with pytest.raises(NotFound):
        engine.retry("t", run.run_id, task_ids=["ghost"])
    retried, requeued = engine.retry("t", run.run_id, task_ids=["a"], include_downstream=False)
    assert requeued == ["a"]
    assert harness.wait_run(retried).state is RunState.SUCCESS


def test_dag_concurrency_is_never_exceeded(harness):
    tasks = "\n".join(
        f'  t{i}: {{type: python, callable: "{T}:track", kwargs: {{name: t{i}, seconds: 0.1}}}}'
        for i in range(6)
    )
    dag = dag_from(f"concurrency: 2\ntasks:\n{tasks}\n")
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    assert fixtures.counts["peak"] == 2


def test_pool_limits_and_priority(harness):
    harness.store.pools.create_pool(Pool("two", 2))
    tasks = "\n".join(
        f'  p{w}: {{type: python, callable: "{T}:track", kwargs: {{name: p{w}, seconds: 0.2}}, pool: two, priority_weight: {w}}}'
        for w in (1, 5, 3, 9)
    )
    dag = dag_from(
        f"tasks:\n  start: {{type: noop}}\n{tasks}\n".replace(
            "pool: two", "pool: two, depends_on: [start]"
        )
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.SUCCESS
    assert fixtures.counts["peak"] == 2
    assert fixtures.order == ["p9", "p5", "p3", "p1"]


def test_pool_resize_takes_effect_at_once(harness):
    harness.store.pools.create_pool(Pool("gate", 0))
    dag = dag_from("tasks:\n  a: {type: noop, pool: gate}\n")
    engine = harness.start(dag)
    run = engine.trigger(
        TriggerRequest("t")
    )  # decided and committed when it returns: no slot, so it waits
    assert harness.states(run) == {"a": "queued"}
    harness.store.pools.update_pool("gate", slots=1)
    assert harness.wait_run(run).state is RunState.SUCCESS


def test_pools_named_by_dags_are_created(harness):
    engine = harness.start(dag_from("tasks:\n  a: {type: noop, pool: warehouse}\n"))
    pool = harness.store.pools.get_pool("warehouse")
    assert (pool.slots, pool.description) == (16, "created for DAG 't'")
    assert harness.wait_run(engine.trigger(TriggerRequest("t"))).state is RunState.SUCCESS


def test_deleted_pool_fails_the_task_clearly(harness):
    engine = harness.start(dag_from("tasks:\n  a: {type: noop, pool: nowhere}\n"))
    harness.store.pools.delete_pool("nowhere")
    engine.call(lambda: None)  # let the engine see the pool event
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.ti(run, "a").error == "pool 'nowhere' does not exist"


def test_sensor_reschedules_without_holding_a_slot(harness, tmp_path):
    flag = tmp_path / "flag"
    harness.store.pools.create_pool(Pool("one", 1))
    dag = dag_from(
        f"""
        tasks:
          wait: {{type: sensor, file: "{flag}", poke_interval: 0.1s, timeout: 20s, pool: one}}
          work: {{type: python, callable: "{T}:track", kwargs: {{name: work, seconds: 0}}, pool: one}}
        """
    )
    engine = harness.start(dag)
    run = engine.trigger(TriggerRequest("t"))
    harness.wait_for(lambda: harness.states(run)["work"] == "success")
    assert harness.states(run)["wait"] == "running"
    flag.write_text("go")
    run = harness.wait_run(run)
    assert run.state is RunState.SUCCESS
    assert harness.ti(run, "wait").try_number == 1
    assert (
        "does not exist yet"
        in harness.store.task_data.read_log(TaskKey("t", run.run_id, "wait"), 1).text
    )


def test_sensor_times_out(harness, tmp_path):
    dag = dag_from(
        f'tasks:\n  wait: {{type: sensor, file: "{tmp_path}/never", poke_interval: 0.05s, timeout: 0.3s}}\n'
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert harness.ti(run, "wait").error == "sensor timed out after 0.3s"


def test_sensor_poke_that_hangs_past_the_budget_is_a_sensor_timeout(harness):
    # (a poke that ends by itself: a thread executor cannot stop code that never returns)
    poke = f'poke: "{T}:track", kwargs: {{name: w, seconds: 1.5}}'
    dag = dag_from(f"tasks:\n  wait: {{type: sensor, {poke}, timeout: 0.3s}}\n")
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert run.state is RunState.FAILED
    assert harness.ti(run, "wait").error == "sensor timed out after 0.3s"


def test_twenty_concurrent_runs(harness):
    dag = dag_from(
        f"""
        max_active_runs: 20
        tasks:
          a: {{type: python, callable: "{T}:add", kwargs: {{a: 1, b: 1}}}}
          b: {{type: shell, command: "echo {{{{ xcom.a.return_value }}}}", depends_on: [a]}}
          c: {{depends_on: [b]}}
        """
    )
    engine = harness.start(dag)
    runs = [engine.trigger(TriggerRequest("t", run_id=f"r{i}")) for i in range(20)]
    finished = [harness.wait_run(r) for r in runs]
    assert all(r.state is RunState.SUCCESS for r in finished)


def test_max_active_runs_queues_extra_runs_oldest_first(harness):
    dag = dag_from(
        f'max_active_runs: 1\ntasks:\n  a: {{type: python, callable: "{T}:track", kwargs: {{name: a, seconds: 0.2}}}}\n'
    )
    engine = harness.start(dag)
    first = engine.trigger(TriggerRequest("t", run_id="first"))
    second = engine.trigger(TriggerRequest("t", run_id="second"))
    assert first.state is RunState.RUNNING and second.state is RunState.QUEUED
    assert harness.wait_run(second).start_date >= harness.wait_run(first).end_date


def test_paused_dag_keeps_runs_queued_until_unpaused(harness):
    from pipeline_core.store.types import DagRecord

    dag = dag_from("tasks:\n  a: {type: noop}\n")
    harness.store.dags.upsert_dag(DagRecord("t", is_paused=True))
    engine = harness.start(dag)
    run = engine.trigger(TriggerRequest("t"))
    assert run.state is RunState.QUEUED
    engine.set_paused("t", False)
    assert harness.wait_run(run).state is RunState.SUCCESS


def test_trigger_errors(harness):
    engine = harness.start(dag_from("tasks:\n  a: {type: noop}\n"))
    with pytest.raises(NotFound, match="no DAG 'ghost'"):
        engine.trigger(TriggerRequest("ghost"))
    engine.trigger(TriggerRequest("t", run_id="same"))
    with pytest.raises(Conflict, match="already exists"):
        engine.trigger(TriggerRequest("t", run_id="same"))


def test_unknown_type_at_run_time_fails_clearly(harness):
    from pipeline_core.dag.model import DAG, Task

    dag = DAG("t", tasks=(Task("odd", type="teleport"),))
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")))
    assert harness.ti(run, "odd").error == "no handler for task type 'teleport'"


def test_process_executor_isolates_a_python_task(harness):
    dag = dag_from(
        f'tasks:\n  iso: {{type: python, callable: "{T}:add", kwargs: {{a: 2, b: 3}}, executor: process}}\n'
    )
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")), timeout=30)
    assert run.state is RunState.SUCCESS
    assert (
        harness.store.task_data.get_xcom(TaskKey("t", run.run_id, "iso"), "return_value").value == 5
    )


def test_runs_made_before_a_dag_change_keep_their_version_and_later_runs_take_the_new(harness):
    first = dag_from(
        f"""
        max_active_runs: 1
        tasks:
          gate: {{type: python, callable: "{T}:wait_gate", kwargs: {{name: g}}}}
          dropped: {{depends_on: [gate]}}
          kept: {{depends_on: [dropped], trigger_rule: all_success}}
        """
    )
    engine = harness.start(first)
    running = engine.trigger(TriggerRequest("t", run_id="running"))
    waiting = engine.trigger(TriggerRequest("t", run_id="waiting"))
    second = dag_from(
        """
        max_active_runs: 1
        tasks:
          gate: {type: noop}
          kept: {type: noop}
        """
    )
    engine.set_dags({"t": second})
    fixtures.open_gate("g")
    assert harness.wait_run(running).state is RunState.SUCCESS
    assert harness.states(running) == {"gate": "success", "dropped": "success", "kept": "success"}
    assert harness.wait_run(waiting).state is RunState.SUCCESS
    assert harness.states(waiting)["dropped"] == "success"
    later = harness.wait_run(engine.trigger(TriggerRequest("t", run_id="later")))
    assert harness.states(later) == {"gate": "success", "kept": "success"}
    versions = {harness.store.runs.get_run("t", r).dag_version for r in ("waiting", "later")}
    assert versions == {first.version, second.version}
