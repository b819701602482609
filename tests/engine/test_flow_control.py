"""Concurrency keys over a real engine: 50 concurrent triggers of one key run one at a time
in trigger order; a newer run cancels the one spinning a core (its process killed); a
``skip_new`` trigger is refused; a key the run cannot render is refused."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from pipeline_core.errors import Conflict, InvalidRequest
from pipeline_core.model import TriggerRequest
from pipeline_core.state import RunState
from pipeline_core.store.types import EventQuery, RunQuery
from tests import fixtures
from tests.conftest import process_alive
from tests.engine.conftest import dag_from

T = "tests.fixtures"


def test_fifty_concurrent_triggers_of_one_key_run_one_at_a_time_in_order(harness) -> None:  # type: ignore[no-untyped-def]
    dag = dag_from(
        """
        max_active_runs: 50
        concurrency: {key: "{{ dag_run.conf.env }}", limit: 1}
        tasks:
          deploy: {type: noop}
          check: {type: noop, depends_on: [deploy]}
        """
    )
    engine = harness.start(dag)
    order: list[str] = []
    lock = threading.Lock()

    def trigger(index: int) -> None:
        with lock:  # the order triggers reach the engine is the order they are recorded in
            run = engine.trigger(TriggerRequest("t", {"env": "prod"}, run_id=f"r{index:02}"))
            order.append(run.run_id)

    threads = [threading.Thread(target=trigger, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = [harness.wait_run(harness.store.runs.get_run("t", r), timeout=60) for r in order]
    assert all(run.state is RunState.SUCCESS for run in runs)
    by_start = sorted(runs, key=lambda run: run.start_date)  # type: ignore[arg-type,return-value]
    assert [run.run_id for run in by_start] == order
    for earlier, later in itertools.pairwise(by_start):
        assert later.start_date >= earlier.end_date  # type: ignore[operator]


def test_a_newer_run_cancels_the_running_one_and_its_spinning_task_dies(
    harness, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    pid_file = tmp_path / "spin.pid"
    dag = dag_from(
        f"""
        max_active_runs: 5
        concurrency: {{key: "{{{{ dag_run.conf.branch }}}}", on_conflict: cancel_running}}
        tasks:
          build: {{type: python, callable: "{T}:spin", kwargs: {{pid_file: "{pid_file}"}},
                  executor: worker}}
        """
    )
    engine = harness.start(dag, default_executor="worker")
    old = engine.trigger(TriggerRequest("t", {"branch": "main"}, run_id="commit-1"))
    harness.poll(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    spinner = int(pid_file.read_text())
    other = engine.trigger(TriggerRequest("t", {"branch": "feature"}, run_id="feature-1"))
    new = engine.trigger(TriggerRequest("t", {"branch": "main"}, run_id="commit-2"))
    cancelled = harness.store.runs.get_run("t", old.run_id)
    assert cancelled.state is RunState.CANCELLED
    reasons = [e.payload.get("reason") for e in harness.store.events.read_events(
        EventQuery(run_id="commit-1", types=("run.state_changed",)))]  # fmt: skip
    assert "cancelled by run 'commit-2' of concurrency key 'main'" in reasons
    harness.poll(lambda: not process_alive(spinner), timeout=10)
    assert harness.store.runs.get_run("t", other.run_id).state is RunState.RUNNING
    assert harness.store.runs.get_run("t", new.run_id).state is RunState.RUNNING
    for run_id in (other.run_id, new.run_id):
        engine.cancel("t", run_id)


def test_skip_new_refuses_and_a_key_that_cannot_render_is_refused(harness) -> None:  # type: ignore[no-untyped-def]
    dag = dag_from(
        f"""
        max_active_runs: 5
        concurrency: {{key: "{{{{ dag_run.conf.env }}}}", on_conflict: skip_new}}
        tasks:
          hold: {{type: python, callable: "{T}:wait_gate", kwargs: {{name: skip}}, executor: worker}}
        """
    )
    engine = harness.start(dag)
    first = engine.trigger(TriggerRequest("t", {"env": "prod"}, run_id="first"))
    with pytest.raises(Conflict, match="run 'first' of DAG 't' holds concurrency key 'prod'"):
        engine.trigger(TriggerRequest("t", {"env": "prod"}, run_id="second"))
    with pytest.raises(InvalidRequest, match="the run's conf has no 'env'"):
        engine.trigger(TriggerRequest("t", {}, run_id="third"))
    stored = harness.store.runs.query_runs(RunQuery(dag_id="t")).items
    assert [r.run_id for r in stored] == ["first"]
    engine.cancel("t", first.run_id)


def test_a_rate_limit_of_10_per_second_starts_tries_at_that_rate(harness) -> None:  # type: ignore[no-untyped-def]
    tasks = "\n".join(f"          t{i}: {{type: noop, rate_limit: {{rate: 10/s, key: api}}}}"
                      for i in range(21))  # fmt: skip
    dag = dag_from(f"tasks:\n{tasks}\n")
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")), timeout=30)
    assert run.state is RunState.SUCCESS
    starts = sorted(harness.ti(run, f"t{i}").start_date for i in range(21))
    after = [(start - starts[0]).total_seconds() for start in starts]
    # Never faster than the rate (the k-th try waits for the k-th token) ...
    assert all(seconds >= k / 10 - 0.005 for k, seconds in enumerate(after)), after
    # ... and not much slower even on a busy machine (the benchmark measures it closely).
    assert 20 / after[-1] >= 9.0, after


def test_a_pools_rate_limit_set_through_the_store_paces_its_tries(harness) -> None:  # type: ignore[no-untyped-def]
    from pipeline_core.store.types import Pool

    harness.store.pools.create_pool(Pool("api", 16, None, "20/s", 1))
    tasks = "\n".join(f"          t{i}: {{type: noop, pool: api}}" for i in range(11))
    dag = dag_from(f"tasks:\n{tasks}\n")
    engine = harness.start(dag)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")), timeout=30)
    starts = sorted(harness.ti(run, f"t{i}").start_date for i in range(11))
    after = [(start - starts[0]).total_seconds() for start in starts]
    assert all(seconds >= k / 20 - 0.005 for k, seconds in enumerate(after)), after
    harness.store.pools.update_pool("api", rate="")  # taken off: the engine hears of it
    rates = engine.loop.core.slots.pools.rates
    harness.poll(lambda: not engine.call(lambda: "api" in rates))
    again = harness.wait_run(engine.trigger(TriggerRequest("t", run_id="free")), timeout=30)
    starts = sorted(harness.ti(again, f"t{i}").start_date for i in range(11))
    assert (starts[-1] - starts[0]).total_seconds() < 0.45


def test_a_task_key_holds_tries_across_runs(harness) -> None:  # type: ignore[no-untyped-def]
    dag = dag_from(
        f"""
        max_active_runs: 10
        tasks:
          call:
            type: python
            callable: "{T}:wait_gate"
            kwargs: {{name: "{{{{ run_id }}}}"}}
            executor: thread
            concurrency: {{key: "{{{{ dag_run.conf.customer }}}}", limit: 1}}
        """
    )
    engine = harness.start(dag)
    for index, customer in enumerate(["acme", "acme", "other"]):
        engine.trigger(TriggerRequest("t", {"customer": customer}, run_id=f"r{index}"))

    def states() -> list[str]:
        return [harness.ti(harness.store.runs.get_run("t", f"r{i}"), "call").state.value
                for i in range(3)]  # fmt: skip

    harness.poll(lambda: states() == ["running", "queued", "running"])
    fixtures.open_gate("r0")
    harness.poll(lambda: states()[1] == "running")
    fixtures.open_gate("r1")
    fixtures.open_gate("r2")
    for index in range(3):
        assert (
            harness.wait_run(harness.store.runs.get_run("t", f"r{index}")).state is RunState.SUCCESS
        )


def test_flow_metrics_show_keys_in_use_and_runs_waiting_for_their_key(harness) -> None:  # type: ignore[no-untyped-def]
    from pipeline_core.engine import Engine, EngineSettings
    from pipeline_core.metrics import MetricsCollector

    metrics = MetricsCollector()
    dag = dag_from(
        f"""
        max_active_runs: 5
        concurrency: {{key: "{{{{ dag_run.conf.env }}}}"}}
        tasks:
          hold: {{type: python, callable: "{T}:wait_gate", kwargs: {{name: metrics}}, executor: worker}}
        """
    )
    engine = harness.engine = Engine(
        harness.store, {"t": dag}, metrics=metrics, settings=EngineSettings(kill_grace=1.0)
    ).start()
    for index in range(3):
        engine.trigger(TriggerRequest("t", {"env": "prod"}, run_id=f"m{index}"))

    def gauge(name: str) -> float | None:
        for sample in metrics.snapshot().get("gauges", []):
            if sample["name"] == name:
                return float(sample["value"])
        return None

    harness.poll(lambda: gauge("run.queued_by_key") == 2 and gauge("flow.keys_in_use") == 1)
    for index in range(3):
        engine.cancel("t", f"m{index}")
