"""Scheduling decisions with a fake clock, and the real loop over a DAGs folder."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_core.dag.model import DAG, Task
from pipeline_core.errors import Conflict
from pipeline_core.model import DagRun, TaskSpec, TriggerRequest
from pipeline_core.scheduler.scheduler import Scheduler, SchedulerSettings
from pipeline_core.state import RunState
from pipeline_core.store import open_store
from pipeline_core.store.types import DagRecord, RunQuery


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class FakeRunner:
    """Creates runs in the store, as the engine would, without running them."""

    def __init__(self, store) -> None:  # type: ignore[no-untyped-def]
        self.store = store
        self.dags: dict[str, DAG] = {}

    def set_dags(self, dags):  # type: ignore[no-untyped-def]
        self.dags = dags

    def trigger(self, request: TriggerRequest):  # type: ignore[no-untyped-def]
        run = DagRun(
            request.dag_id,
            request.run_id,
            RunState.QUEUED,
            request.run_type,
            request.logical_date,
        )
        tasks = [TaskSpec(t.task_id) for t in self.dags[request.dag_id].tasks]
        return self.store.runs.create_run(run, tasks)


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    created = open_store(f"sqlite:///{tmp_path / 'sched.db'}")
    yield created
    created.close()


def scheduler_for(store, *dags: DAG) -> Scheduler:  # type: ignore[no-untyped-def]
    scheduler = Scheduler(store, FakeRunner(store))
    scheduler.set_dags({d.dag_id: d for d in dags})
    return scheduler


def dag(schedule="0 6 * * *", **fields) -> DAG:  # type: ignore[no-untyped-def]
    fields.setdefault("start_date", utc(2026, 1, 1))
    return DAG("d", (Task("a"),), schedule=schedule, **fields)


def logical_dates(store, dag_id="d"):  # type: ignore[no-untyped-def]
    runs = store.runs.query_runs(RunQuery(dag_id=dag_id, order_by="logical_date", limit=1000)).items
    return [r.logical_date for r in runs]


def finish_all(store, dag_id="d"):  # type: ignore[no-untyped-def]
    for run in store.runs.query_runs(
        RunQuery(dag_id=dag_id, states=(RunState.QUEUED,), limit=1000)
    ).items:
        store.runs.transition_run(dag_id, run.run_id, RunState.QUEUED, RunState.CANCELLED)


def test_catchup_false_creates_only_the_latest_missed_run(store):
    s = scheduler_for(store, dag(catchup=False))
    nxt = s.tick(utc(2026, 1, 10, 12))
    assert logical_dates(store) == [utc(2026, 1, 10, 6)]
    assert nxt == utc(2026, 1, 11, 6)
    assert s.tick(utc(2026, 1, 11, 5)) == utc(2026, 1, 11, 6)
    finish_all(store)
    s.tick(utc(2026, 1, 11, 6))
    assert logical_dates(store)[-1] == utc(2026, 1, 11, 6)


def test_catchup_true_creates_missed_runs_oldest_first_within_max_active_runs(store):
    s = scheduler_for(store, dag(catchup=True, max_active_runs=2))
    s.tick(utc(2026, 1, 5, 12))
    assert logical_dates(store) == [utc(2026, 1, 1, 6), utc(2026, 1, 2, 6)]
    s.tick(utc(2026, 1, 5, 12))  # no capacity: nothing more
    assert len(logical_dates(store)) == 2
    finish_all(store)
    s.tick(utc(2026, 1, 5, 12))
    assert logical_dates(store)[2:] == [utc(2026, 1, 3, 6), utc(2026, 1, 4, 6)]
    finish_all(store)
    s.tick(utc(2026, 1, 5, 12))
    assert logical_dates(store)[4:] == [utc(2026, 1, 5, 6)]


def test_a_clock_jump_creates_no_burst_without_catchup(store):
    s = scheduler_for(store, dag("*/15 * * * *", catchup=False, max_active_runs=10))
    s.tick(utc(2026, 1, 1, 0, 0))
    s.tick(utc(2026, 3, 1, 0, 7))  # the machine slept two months
    assert logical_dates(store) == [utc(2026, 1, 1), utc(2026, 3, 1, 0, 0)]
    s.tick(utc(2026, 3, 1, 0, 7))
    assert len(logical_dates(store)) == 2


def test_max_active_runs_holds_new_runs_until_one_finishes(store):
    s = scheduler_for(store, dag("@hourly", catchup=False, max_active_runs=1))
    s.tick(utc(2026, 1, 1, 5, 30))
    s.tick(utc(2026, 1, 1, 6, 30))
    assert logical_dates(store) == [utc(2026, 1, 1, 5)]
    finish_all(store)
    s.tick(utc(2026, 1, 1, 6, 30))
    assert logical_dates(store) == [utc(2026, 1, 1, 5), utc(2026, 1, 1, 6)]


def test_paused_dags_get_no_scheduled_runs(store):
    s = scheduler_for(store, dag(catchup=False))
    store.dags.upsert_dag(DagRecord("d"))
    store.dags.set_paused("d", True)
    s.tick(utc(2026, 1, 3, 12))
    assert logical_dates(store) == []
    store.dags.set_paused("d", False)
    s.tick(utc(2026, 1, 3, 12))
    assert logical_dates(store) == [utc(2026, 1, 3, 6)]


def test_manual_runs_beside_the_schedule(store):
    s = scheduler_for(store, dag(catchup=False, max_active_runs=5))
    s.runner.trigger(
        TriggerRequest("d", run_id="manual-1", logical_date=utc(2026, 1, 2, 6), run_type="manual")
    )
    s.tick(utc(2026, 1, 2, 7))
    runs = store.runs.query_runs(RunQuery(dag_id="d")).items
    assert sorted((r.run_type, r.logical_date) for r in runs) == [
        ("manual", utc(2026, 1, 2, 6)),
        ("scheduled", utc(2026, 1, 2, 6)),
    ]


def test_unscheduled_and_once(store):
    s = scheduler_for(
        store,
        DAG("manual_only", (Task("a"),)),
        DAG("once", (Task("a"),), schedule="@once", start_date=utc(2026, 1, 5)),
    )
    assert s.tick(utc(2026, 1, 1)) == utc(2026, 1, 5)
    s.tick(utc(2026, 2, 1))
    s.tick(utc(2026, 3, 1))
    assert logical_dates(store, "once") == [utc(2026, 1, 5)]
    assert logical_dates(store, "manual_only") == []


def test_state_survives_a_restart(store):
    scheduler_for(store, dag(catchup=False, max_active_runs=5)).tick(utc(2026, 1, 2, 7))
    again = scheduler_for(store, dag(catchup=False, max_active_runs=5))
    again.tick(utc(2026, 1, 2, 8))
    assert logical_dates(store) == [utc(2026, 1, 2, 6)]


def test_two_schedulers_on_one_file_create_each_run_once(tmp_path):
    path = f"sqlite:///{tmp_path / 'two.db'}"
    stores = [open_store(path), open_store(path)]
    schedulers = [
        scheduler_for(s, dag("*/5 * * * *", catchup=True, max_active_runs=1000)) for s in stores
    ]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(s: Scheduler) -> None:
        try:
            barrier.wait()
            for hour in range(1, 6):
                s.tick(utc(2026, 1, 1, hour))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    dates = logical_dates(stores[0])
    assert len(dates) == len(set(dates)) == 5 * 12 + 1
    for s in stores:
        s.close()


def test_conflicts_are_quiet(store):
    s = scheduler_for(store, dag(catchup=False))
    s.runner.trigger(
        TriggerRequest("d", run_id="x", logical_date=utc(2026, 1, 2, 6), run_type="scheduled")
    )
    s.tick(utc(2026, 1, 2, 7))  # the run for 06:00 exists: no error, nothing new
    assert logical_dates(store) == [utc(2026, 1, 2, 6)]
    with pytest.raises(Conflict):
        s.runner.trigger(
            TriggerRequest("d", run_id="y", logical_date=utc(2026, 1, 2, 6), run_type="scheduled")
        )


def test_folder_rescan_picks_up_added_changed_and_deleted_files(store, tmp_path):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "one.yaml").write_text(
        "schedule: '@hourly'\nstart_date: 2026-01-01\ntasks: {a: {}}\n"
    )
    runner = FakeRunner(store)
    s = Scheduler(store, runner, str(folder), settings=SchedulerSettings(rescan_interval=3600))
    s.refresh_dags()
    assert set(s.dags) == {"one"} and store.dags.get_dag("one").task_count == 1
    (folder / "two.yaml").write_text("tasks: {a: {}, b: {depends_on: [a]}}\n")
    (folder / "one.yaml").write_text(
        "schedule: '@daily'\nstart_date: 2026-01-01\ntasks: {a: {}, z: {}}\n"
    )
    s.refresh_dags()
    assert set(s.dags) == {"one", "two"} and set(runner.dags) == {"one", "two"}
    assert (
        store.dags.get_dag("one").schedule == "@daily" and store.dags.get_dag("one").task_count == 2
    )
    (folder / "one.yaml").write_text("tasks: [broken\n")
    s.refresh_dags()
    assert store.dags.get_dag("one").schedule == "@daily"  # the last good definition stays
    [error] = store.dags.list_import_errors()
    assert error.filename.endswith("one.yaml") and "invalid YAML" in error.issues[0]["message"]
    (folder / "one.yaml").unlink()
    s.refresh_dags()
    assert set(s.dags) == {"two"}
    assert store.dags.get_dag("one").is_active is False
    assert store.dags.list_import_errors() == []


def test_the_loop_runs_and_stops(store, tmp_path):
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "tick.yaml").write_text(
        "schedule: '* * * * *'\nstart_date: 2026-01-01\ntasks: {a: {}}\n"
    )
    s = Scheduler(
        store, FakeRunner(store), str(folder), settings=SchedulerSettings(heartbeat_interval=0.1)
    ).start()
    deadline = time.monotonic() + 10
    while not logical_dates(store, "tick") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(logical_dates(store, "tick")) == 1
    assert store.heartbeats.list_heartbeats("scheduler")
    started = time.monotonic()
    s.stop()
    assert time.monotonic() - started < 2 and not s.running
    assert (
        utc(2026, 1, 1)
        < logical_dates(store, "tick")[0]
        <= datetime.now(UTC) + timedelta(minutes=1)
    )
