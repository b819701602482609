"""The engine's loop around its core: one commit per trigger, and the event log as the one
way news reaches it — from other processes too."""

from __future__ import annotations

import subprocess
import sys

from pipeline_core.engine.core.jobs import Job, OnComplete
from pipeline_core.model import TaskKey, TriggerRequest
from pipeline_core.state import RunState
from pipeline_core.store.types import Pool
from tests import fixtures
from tests.engine.conftest import dag_from


class HoldingExecutor:
    """Takes tries and never finishes them, so nothing commits after the trigger."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def start(self, on_complete: OnComplete) -> None:
        self.on_complete = on_complete

    def submit(self, job: Job) -> None:
        self.jobs.append(job)

    def cancel(self, key: TaskKey, try_number: int) -> None:
        pass

    def running_elsewhere(self, tries: object) -> set[tuple[TaskKey, int]]:
        return set()

    def shutdown(self, wait: bool = True) -> None:
        pass


def counted_commits(store, monkeypatch) -> list[bool]:  # type: ignore[no-untyped-def]
    """A list that gains an entry for every write transaction the store begins from now."""
    commits: list[bool] = []
    begin = store.backend.transaction

    def counted(write: bool):  # type: ignore[no-untyped-def]
        if write:
            commits.append(True)
        return begin(write)

    monkeypatch.setattr(store.backend, "transaction", counted)
    return commits


def test_a_trigger_is_one_commit_up_to_its_first_try(harness, monkeypatch):
    dag = dag_from("tasks:\n  a: {type: noop}\n  b: {type: noop}\n  c: {depends_on: [a, b]}\n")
    executor = HoldingExecutor()
    from pipeline_core.engine import Engine, EngineSettings

    engine = Engine(
        harness.store,
        {"t": dag},
        executor=executor,
        settings=EngineSettings(heartbeat_interval=3600, watch_other_processes=False),
    ).start()
    harness.engine = engine
    store = harness.store
    commits = counted_commits(store, monkeypatch)
    run = engine.trigger(TriggerRequest("t"))
    assert len(commits) == 1
    assert run.state is RunState.RUNNING
    assert sorted(job.key.task_id for job in executor.jobs) == ["a", "b"]
    assert harness.states(run) == {"a": "running", "b": "running", "c": "queued"}
    assert store.runs.get_run("t", run.run_id).state is RunState.RUNNING


def test_several_triggers_are_one_commit_and_a_refused_one_is_answered_alone(harness, monkeypatch):
    dag = dag_from("max_active_runs: 20\ntasks:\n  a: {type: noop}\n")
    from pipeline_core.engine import Engine, EngineSettings
    from pipeline_core.errors import Conflict, NotFound

    engine = Engine(
        harness.store,
        {"t": dag},
        executor=HoldingExecutor(),
        settings=EngineSettings(heartbeat_interval=3600, watch_other_processes=False),
    ).start()
    harness.engine = engine
    store = harness.store
    engine.trigger(TriggerRequest("t", run_id="taken"))
    commits = counted_commits(store, monkeypatch)
    wanted = [TriggerRequest("t", run_id=f"r{i}") for i in range(5)]
    answers = engine.trigger_all([*wanted, TriggerRequest("t", run_id="taken")])
    assert len(commits) == 1
    assert [a.run_id for a in answers[:5]] == [f"r{i}" for i in range(5)]
    assert isinstance(answers[5], Conflict)
    assert all(store.runs.get_run("t", f"r{i}").state is RunState.RUNNING for i in range(5))
    # a commit that fails (an update consumed by another run) is tried one by one
    consumed = (10**9,)
    answers = engine.trigger_all([TriggerRequest("t", run_id="x1"),
                                  TriggerRequest("t", run_id="x2", consumes=consumed)])  # fmt: skip
    assert answers[0].run_id == "x1" and isinstance(answers[1], Conflict)
    import pytest

    with pytest.raises(NotFound):
        engine.trigger_all([TriggerRequest("nope")])


def test_a_pool_resized_by_another_process_reaches_the_engine(harness):
    """``pipeline-core api`` beside ``pipeline-core scheduler``: the resize is an event in the
    log, and the engine follows the log."""
    harness.store.pools.create_pool(Pool("gate", 0))
    engine = harness.start(dag_from("tasks:\n  a: {type: noop, pool: gate}\n"))
    run = engine.trigger(TriggerRequest("t"))
    assert harness.states(run) == {"a": "queued"}
    code = (
        "import sys; from pipeline_core.store import open_store; "
        "s = open_store(sys.argv[1]); s.pools.update_pool('gate', slots=1); s.close()"
    )
    subprocess.run([sys.executable, "-c", code, harness.store.url], check=True, timeout=60)
    assert harness.wait_run(run).state is RunState.SUCCESS


def test_a_command_whose_commit_fails_raises_and_the_engine_goes_on(harness, monkeypatch):
    import pytest

    from pipeline_core.errors import StoreUnavailable

    engine = harness.start(
        dag_from(
            'tasks:\n  a: {type: python, callable: "tests.fixtures:wait_gate", kwargs: {name: lost}}\n'
        )
    )
    run = engine.trigger(TriggerRequest("t"))
    harness.wait_for(lambda: harness.states(run) == {"a": "running"})
    real_apply = harness.store.runs.apply

    def unavailable(writes, now=None):  # type: ignore[no-untyped-def]
        raise StoreUnavailable("database error: the server is restarting")

    monkeypatch.setattr(harness.store.runs, "apply", unavailable)
    with pytest.raises(StoreUnavailable):
        engine.cancel("t", run.run_id)
    monkeypatch.setattr(harness.store.runs, "apply", real_apply)
    assert harness.store.runs.get_run("t", run.run_id).state is RunState.RUNNING
    assert engine.cancel("t", run.run_id).state is RunState.CANCELLED
    assert harness.wait_run(run).state is RunState.CANCELLED
    fixtures.open_gate("lost")  # the thread running the task ends too


def test_while_the_store_cannot_commit_writes_wait_and_no_try_goes_out(harness, monkeypatch):
    """A store that is down for a while (a database restart): the engine keeps its writes
    in order and retries; the run then finishes, every task run once."""
    from pipeline_core.errors import StoreUnavailable

    dag = dag_from(
        'tasks:\n  a: {type: python, callable: "tests.fixtures:track", kwargs: {name: a}}\n'
        '  b: {type: python, callable: "tests.fixtures:track", kwargs: {name: b}, depends_on: [a]}\n'
        '  c: {type: python, callable: "tests.fixtures:track", kwargs: {name: c}, depends_on: [b]}\n'
    )
    engine = harness.start(dag)
    real_apply = harness.store.runs.apply
    failures = {"left": 3}

    def flaky(writes, now=None):  # type: ignore[no-untyped-def]
        if failures["left"] > 0 and any(getattr(w, "new", None) == "success" for w in writes):
            failures["left"] -= 1
            raise StoreUnavailable("database error: the server is restarting")
        return real_apply(writes, now=now)

    monkeypatch.setattr(harness.store.runs, "apply", flaky)
    run = harness.wait_run(engine.trigger(TriggerRequest("t")), timeout=30)
    assert run.state is RunState.SUCCESS
    assert failures["left"] == 0
    assert fixtures.order == ["a", "b", "c"]  # each ran once, in order
